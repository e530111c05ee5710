import { mkdir } from "node:fs/promises";
import { loadSettings, type Settings } from "../core/config.js";
import { openIdentityBytes, readIdentityBytes } from "../core/crypto/identity-file.js";
import type { UserKey } from "../core/crypto/keys.js";
import { PASSPHRASE_ENV, PIN_ENV, requireSecret, type SecretSource } from "../core/crypto/secrets.js";
import type { PointerTransport } from "../core/pointer/transport.js";
import type { BlobStore } from "../storage-adapters/blob-store.js";
import { Output } from "./output.js";

/** Flags every command accepts (DESIGN.md "common"). */
export interface GlobalArgs {
  json?: boolean;
  quiet?: boolean;
  store?: string;
  dht?: boolean;
  relay?: string[];
  passphraseFile?: string;
  passphraseFd?: number;
}

/** What a command needs, built lazily from the flags and the environment. */
export class Context {
  readonly settings: Settings;
  readonly out: Output;
  private key: UserKey | undefined;

  constructor(
    readonly args: GlobalArgs,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.settings = loadSettings(env, { store: args.store, relays: args.relay, noDht: args.dht === false });
    this.out = new Output(!!args.json, !!args.quiet);
    for (const warning of this.settings.warnings) this.out.warn(warning);
  }

  passphraseSource(): SecretSource {
    return {
      envVar: PASSPHRASE_ENV,
      file: this.args.passphraseFile,
      fd: this.args.passphraseFd,
      env: this.settings.env,
      label: "passphrase",
      fileFlag: "--passphrase-file",
      fdFlag: "--passphrase-fd",
    };
  }

  /** Where a PIN comes from: CCBUNDLE_PIN, --pin-file, or a prompt (never argv). */
  pinSource(file: string | undefined): SecretSource {
    return {
      envVar: PIN_ENV,
      file,
      env: this.settings.env,
      label: "PIN",
      fileFlag: "--pin-file",
    };
  }

  /** The user's key, asking for the passphrase only if the identity is encrypted. */
  async userKey(): Promise<UserKey> {
    if (!this.key) {
      const bytes = await readIdentityBytes(this.settings.home);
      const opened = await openIdentityBytes(
        bytes,
        () => requireSecret(this.passphraseSource(), { message: "Passphrase for your ccbundle identity: " }),
        "your ccbundle identity",
      );
      this.key = opened.key;
    }
    return this.key;
  }

  /** The configured store (or the default local one, created on first use). */
  async store(): Promise<BlobStore> {
    const { openStore } = await import("../storage-adapters/index.js");
    if (this.settings.store) return openStore(this.settings.store);
    await mkdir(this.settings.defaultStore, { recursive: true, mode: 0o700 });
    return openStore(this.settings.defaultStore);
  }

  /** Run `fn` with the configured store and the transports over it, closing both afterwards. */
  async withStoreAndTransports<T>(fn: (store: BlobStore, transports: PointerTransport[]) => Promise<T>): Promise<T> {
    const store = await this.store();
    const transports = await this.transports(store);
    try {
      return await fn(store, transports);
    } finally {
      await Promise.all(transports.map((t) => t.close?.()));
      await store.close?.();
    }
  }

  /** DHT, relays and the store mirror, as configured. Loaded only by commands that publish or resolve. */
  async transports(store: BlobStore | undefined): Promise<PointerTransport[]> {
    const { transportsFor } = await import("../core/pointer/resolver.js");
    return transportsFor(this.settings, store);
  }
}
