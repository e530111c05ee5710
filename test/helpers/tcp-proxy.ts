import net from "node:net";

/**
 * A loopback TCP proxy that counts the bytes it relays each way, so a test can
 * pull the plug on the server behind it (kill s3rver) at a known point of an
 * upload or a download. It survives the server's restart on the same port.
 */
export interface TcpProxy {
  readonly port: number;
  /** Bytes relayed client → server and server → client since start or `reset()`. */
  readonly up: number;
  readonly down: number;
  /** Call `fn` once when the relayed bytes in one direction pass `threshold`. */
  when(direction: "up" | "down", threshold: number, fn: () => void): void;
  reset(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const counts = { up: 0, down: 0 };
  let triggers: { direction: "up" | "down"; threshold: number; fn: () => void }[] = [];
  const sockets = new Set<net.Socket>();
  const count = (direction: "up" | "down", n: number) => {
    counts[direction] += n;
    for (const trigger of triggers.filter((t) => t.direction === direction && counts[direction] >= t.threshold)) {
      triggers = triggers.filter((t) => t !== trigger);
      trigger.fn();
    }
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    client.on("data", (chunk: Buffer) => {
      count("up", chunk.length);
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (chunk: Buffer) => {
      count("down", chunk.length);
      if (!client.write(chunk)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
      socket.on("end", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get up() {
      return counts.up;
    },
    get down() {
      return counts.down;
    },
    when(direction, threshold, fn) {
      triggers.push({ direction, threshold: counts[direction] + threshold, fn });
    },
    reset() {
      counts.up = 0;
      counts.down = 0;
      triggers = [];
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
