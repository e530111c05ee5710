// Preloaded (NODE_OPTIONS=--import) into a backup that test/backup-interrupt.test.ts kills: the
// process SIGKILLs itself right after its first write to the backup journal (core/backup/state.ts),
// i.e. right after its first finished upload is recorded, however fast or slow the machine is.
// (Polling for the line from the test and killing from there left a ~200 ms window, which a busy
// machine could miss.) Linux: the descriptor's path comes from /proc.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const realWriteSync = fs.writeSync;
fs.writeSync = function writeSync(fd, ...rest) {
  const written = realWriteSync.call(this, fd, ...rest);
  let target = "";
  try {
    target = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    // not a file descriptor /proc knows: not the journal
  }
  if (target.endsWith(".journal")) process.kill(process.pid, "SIGKILL");
  return written;
};
syncBuiltinESMExports();
