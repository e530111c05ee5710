import type { Argv } from "yargs";
import { readPublicKey } from "../../core/crypto/identity-file.js";
import { isoTime } from "../../core/duration.js";
import { Context, type GlobalArgs } from "../context.js";
import { keyArgument } from "../key-argument.js";
import { count } from "../output.js";

/** `status`, `republish`, `revoke`: the published record. */

export function recordCommands(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli
    .command(
      "status [key]",
      "Show the current record of a key (default: yours) and what you can read of it",
      (y) => y.positional("key", { type: "string", describe: "A z32 key (default: your own)" }),
      async (args) => {
        const ctx = new Context(args);
        const own = await readPublicKey(ctx.settings.home);
        const named = args.key === undefined ? undefined : keyArgument(args.key);
        const publisher = named ?? own ?? (await ctx.userKey()).z32;
        // Reading slots needs our identity; without one, status still shows the public facts.
        const identities = own || named === undefined ? [(await ctx.userKey()).ageIdentity()] : [];
        const store = ctx.settings.store ? await ctx.store() : await ctx.store().catch(() => undefined);
        const transports = await ctx.transports(store);
        const { recordStatus } = await import("../../core/manage.js");
        try {
          const report = await recordStatus({ settings: ctx.settings, publisher, identities, transports });
          ctx.out.result({ ok: true, ...report });
          ctx.out.line(`Record of ${report.publisher}`);
          ctx.out.line(
            `  published ${report.published}, ${report.dnsBytes}/${report.budget} bytes, ${report.slotCount} slot(s)`,
          );
          ctx.out.line(`  found via ${report.from.join(", ")}`);
          for (const failure of report.failures)
            ctx.out.line(`  not found via ${failure.transport}: ${failure.reason}`);
          if (report.newerSlots > 0)
            ctx.out.line(
              `  ${count(report.newerSlots, "slot")} in a newer ccbundle's format, which this one cannot read`,
            );
          if (report.slots.length === 0 && report.newerSlots === 0) {
            ctx.out.line(
              identities.length > 0
                ? "  no slot is readable with your key"
                : "  you have no ccbundle identity here, so no slot can be opened (a PIN handoff: `ccbundle pull <key> --pin`)",
            );
          }
          for (const slot of report.slots) {
            const when = isoTime(slot.created);
            const expires = slot.expires
              ? `, ${slot.expires * 1000 < Date.now() ? "expired" : "expires"} ${isoTime(slot.expires)}`
              : "";
            const what =
              slot.kind !== "handoff"
                ? slot.kind
                : slot.state === "expired"
                  ? "expired handoff"
                  : slot.state === "picked up"
                    ? "handoff, picked up (its bundle is gone)"
                    : "handoff";
            const state = slot.kind === "tombstone" ? slot.state : what;
            ctx.out.line(
              `  ${slot.label}: ${state}, ${when}${expires}${slot.burn && slot.kind !== "tombstone" ? ", burn after reading" : ""} (${slot.bytes} bytes)`,
            );
            if (slot.session)
              ctx.out.line(
                `      session ${slot.session.id}${slot.session.title ? ` "${slot.session.title}"` : ""}${slot.host ? ` from ${slot.host}` : ""}`,
              );
            if (slot.blob)
              ctx.out.line(
                `      blob ${slot.blob.size} bytes in ${slot.blob.store ?? "(presigned URL)"}${slot.blob.url && slot.blob.store ? " (+ presigned URL)" : ""}`,
              );
          }
        } finally {
          await Promise.all(transports.map((t) => t.close?.()));
          await store?.close?.();
        }
      },
    )
    .command(
      "republish",
      "Re-sign and publish your current record again (DHT nodes forget records within hours)",
      (y) => y,
      async (args) => {
        const ctx = new Context(args);
        const key = await ctx.userKey();
        const { republish } = await import("../../core/manage.js");
        await ctx.withStoreAndTransports(async (_store, transports) => {
          const report = await republish({ settings: ctx.settings, key, transports });
          ctx.out.result({ ok: true, ...report });
          ctx.out.line(`Republished ${report.slots} slot(s), ${report.dnsBytes} bytes: ${report.summary}`);
          for (const failure of report.failures) ctx.out.warn(`not published: ${failure}`);
        });
      },
    )
    .command(
      "revoke",
      "Delete your current handoff blob(s) and publish a tombstone",
      (y) => y,
      async (args) => {
        const ctx = new Context(args);
        const key = await ctx.userKey();
        const { revoke } = await import("../../core/manage.js");
        await ctx.withStoreAndTransports(async (_store, transports) => {
          const report = await revoke({ settings: ctx.settings, key, transports });
          ctx.out.result({ ok: true, ...report });
          for (const warning of report.warnings) ctx.out.warn(warning);
          if (report.revoked.length === 0 && report.olderDeleted === 0 && report.newerRemoved === 0)
            ctx.out.line("Nothing to revoke: no live handoff in your record.");
          else if (report.revoked.length > 0)
            ctx.out.line(`Revoked ${report.revoked.map((r) => r.label).join("; ")}: ${revokeOutcome(report)}.`);
          if (report.expiredDeleted > 0)
            ctx.out.line(
              `Deleted the bundles of ${count(report.expiredDeleted, "expired handoff")} (no one could pull them any more).`,
            );
          if (report.olderDeleted > 0)
            ctx.out.line(
              `Deleted the bundles of ${count(report.olderDeleted, "older handoff")} from this machine that the record no longer lists (a cached copy of an older record still led to them).`,
            );
        });
      },
    );
}

/** What a revoke did, in words: a bundle it could not delete (warned about above) is not called deleted. */
function revokeOutcome(report: { revoked: Array<{ blobDeleted: boolean }>; summary: string }): string {
  const count = report.revoked.length;
  const kept = report.revoked.filter((r) => !r.blobDeleted).length;
  const plural = (word: string) => (count === 1 ? word : `${word}s`);
  const tombstones = `${plural("tombstone")} published (${report.summary})`;
  if (kept === 0) return `${plural("bundle")} deleted, ${tombstones}`;
  const notDeleted = kept === count ? `${plural("bundle")} not deleted` : `${kept} of ${count} bundles not deleted`;
  return `${tombstones}; ${notDeleted} (see the warning)`;
}
