/**
 * `map`'s value for `key`, made by `make` the first time it is asked for and kept: the
 * answers a receiving run works out once (git per checkout, target per project, real paths).
 */
export function remembered<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}
