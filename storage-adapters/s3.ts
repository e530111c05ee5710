import { UsageError } from "../core/errors.js";
import type { BlobStore } from "./blob-store.js";

// Placeholder until the S3 adapter lands (issue 4).
export const S3Store = {
  fromUrl(url: string): BlobStore {
    throw new UsageError(`S3 stores are not supported yet: ${url}`);
  },
};
