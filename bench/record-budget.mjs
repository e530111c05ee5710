// Where the 1000 bytes of a DHT record go: per-slot and whole-record sizes for
// each handoff mode, in the format before issue 6 (JSON sealed with age, DNS
// names uncompressed) and now (compact payload, binary slot seal, compressed
// names). Run after `npm run build`: node bench/record-budget.mjs
import { randomBytes, randomUUID } from "node:crypto";
import SignedPacket from "pkarr/lib/signed_packet.js";
import { generateKeyPair } from "pkarr/lib/tools.js";
import { encrypt } from "../dist/core/crypto/age/index.js";
import { UserKey } from "../dist/core/crypto/keys.js";
import { PinRecipient, pinBytes } from "../dist/core/crypto/pin.js";
import { dnsSize } from "../dist/core/pointer/packet.js";
import { encodePayload } from "../dist/core/pointer/payload-codec.js";
import { recordEntries, sealedSize, slotFor } from "../dist/core/pointer/record.js";

const alice = UserKey.generate();
const team = [UserKey.generate(), UserKey.generate()];
const stores = {
  nas: "file:///home/alice/nas/ccbundle",
  s3: "s3://team-bucket/ccb?endpoint=https://minio.home.arpa:9000&region=us-east-1&path_style=true",
};

function payload(store, slot) {
  return {
    v: 1,
    pub: alice.z32,
    slot,
    kind: "handoff",
    created: 1_790_000_000,
    expires: 1_790_086_400,
    host: "alice-laptop",
    session: { id: randomUUID(), title: "Add rate limiting to the login endpoint" },
    blob: {
      store,
      key: "ccbundle/v1/blobs/abcdefghijklmnopqrstuvwxyz",
      size: 7_340_032,
      sha256: randomBytes(32).toString("hex"),
      age: randomBytes(32).toString("base64url"),
    },
  };
}

// Before: JSON in age (the old push also sent the host name), one uncompressed name per TXT record.
async function oldSlot(p, readers) {
  return encrypt(
    Buffer.from(JSON.stringify(p)),
    readers.map((k) => k.ageRecipient()),
  );
}
function oldDns(slots) {
  const keypair = generateKeyPair(new Uint8Array(32));
  const answers = slots.map((data) => {
    const parts = [];
    for (let i = 0; i < data.length; i += 255) parts.push(Buffer.from(data.subarray(i, i + 255)));
    return { type: "TXT", class: "IN", name: "_ccbundle", ttl: 300, data: parts };
  });
  return SignedPacket.fromPacket(
    keypair,
    { type: "response", id: 0, flags: 1 << 10, answers },
    { timestamp: 1 },
  ).size();
}

function newSlot(p, recipients) {
  // push no longer sends the host name (it is in the bundle's manifest) and cuts titles to 32 bytes
  const { host: _host, ...rest } = p;
  if (rest.session.title) rest.session = { ...rest.session, title: "Add rate limiting to the login…" };
  // The blob key is derived from the slot's file key now, not carried.
  return {
    payload: encodePayload(rest, { omitBlobKey: true }).length,
    sealed: Buffer.alloc(sealedSize(rest, recipients, { omitBlobKey: true })),
  };
}

const rows = [];
for (const [storeName, store] of Object.entries(stores)) {
  const self = payload(store, "self");
  const to1 = payload(store, slotFor(alice.publicKey, [team[0].ageRecipient()]));
  const to2 = payload(
    store,
    slotFor(
      alice.publicKey,
      team.map((k) => k.ageRecipient()),
    ),
  );
  const pin = payload(store, "pin");
  const pinRecipient = new PinRecipient(pinBytes("12345678"));
  const cases = {
    self: [self, [alice], [alice.ageRecipient()]],
    "to 1": [to1, [alice, team[0]], [alice.ageRecipient(), team[0].ageRecipient()]],
    "to 2": [to2, [alice, ...team], [alice.ageRecipient(), ...team.map((k) => k.ageRecipient())]],
    pin: [pin, [alice], [alice.ageRecipient(), pinRecipient]],
  };
  const sealed = {};
  for (const [mode, [p, oldReaders, recipients]] of Object.entries(cases)) {
    const before = await oldSlot(p, oldReaders);
    const after = newSlot(p, recipients);
    sealed[mode] = { before, after: after.sealed };
    rows.push({
      store: storeName,
      record: mode,
      "payload before": Buffer.byteLength(JSON.stringify(p)),
      "payload after": after.payload,
      "slot before": before.length,
      "slot after": after.sealed.length,
      "DNS before": oldDns([before]),
      "DNS after": dnsSize(recordEntries([after.sealed])),
    });
  }
  // push drops the newest slot's title when that lets an older slot stay
  const untitled = { ...pin, session: { id: pin.session.id } };
  sealed["pin (no title)"] = {
    before: await oldSlot(untitled, [alice]),
    after: newSlot(untitled, [alice.ageRecipient(), pinRecipient]).sealed,
  };
  for (const pair of [
    ["self", "to 2"],
    ["self", "pin"],
    ["self", "to 1", "pin"],
    ["self", "to 1", "pin (no title)"],
  ]) {
    rows.push({
      store: storeName,
      record: pair.join(" + "),
      "DNS before": oldDns(pair.map((m) => sealed[m].before)),
      "DNS after": dnsSize(recordEntries(pair.map((m) => sealed[m].after))),
    });
  }
}
console.table(rows);
console.log("budget: 1000 bytes of DNS per record");
