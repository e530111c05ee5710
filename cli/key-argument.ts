import { canonicalZ32Key } from "../core/crypto/keys.js";
import { UsageError } from "../core/errors.js";

/**
 * A ccbundle key from the command line (`pull <key>`, `status <key>`, `--from`), in the form
 * `whoami` prints: a key pasted in capitals or with `pk:` is the same key, and must be recognised
 * as the own one or as a bundle's signer. A key that is not one is refused here (exit 2), before
 * any passphrase prompt or network work. `flag` names where it came from in the message.
 */
export function keyArgument(value: string, flag = ""): string {
  try {
    return canonicalZ32Key(value);
  } catch (err) {
    if (err instanceof UsageError && flag) throw new UsageError(`${flag}${value}: ${err.message}`, { hint: err.hint });
    throw err;
  }
}
