// Preloaded into CLI child processes by the leak test (NODE_OPTIONS=--import):
// gives the "machine" a long, distinctive host and user name, so a scan of
// published bytes for them means something (this VM's real names, "vm" and
// "root", are short enough to turn up in random ciphertext by chance).
import os from "node:os";

const host = process.env.CCB_FAKE_HOSTNAME;
const user = process.env.CCB_FAKE_USER;
if (host) os.hostname = () => host;
if (user) {
  const real = os.userInfo;
  os.userInfo = (options) => ({ ...real(options), username: user });
}
