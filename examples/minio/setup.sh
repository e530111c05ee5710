#!/usr/bin/env bash
# One-time MinIO setup for ccbundle, with the MinIO client `mc`:
#   - bucket $BUCKET (default: ccbundle)
#   - user $CCB_USER with a policy limited to the key prefix $CCB_USER/ in that bucket
#   - a lifecycle rule expiring $CCB_USER/ccbundle/v1/blobs/ after $HANDOFF_DAYS days
#
# Usage (root credentials from the same .env docker compose uses):
#   set -a; . ./.env; set +a
#   MINIO_URL=http://nas.lan:9000 CCB_USER=alice HANDOFF_DAYS=14 ./setup.sh
#
# Run it again for each person (CCB_USER=bob ...). Re-running for the same user
# rotates that user's secret key. Set HANDOFF_DAYS=0 to add no lifecycle rule
# (for a backup prefix, see README.md).
set -euo pipefail
cd "$(dirname "$0")"

MINIO_URL=${MINIO_URL:-http://localhost:9000}
BUCKET=${BUCKET:-ccbundle}
CCB_USER=${CCB_USER:-alice}
HANDOFF_DAYS=${HANDOFF_DAYS:-14}
: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER (e.g. set -a; . ./.env; set +a)}"
: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"

command -v mc >/dev/null || {
  echo "setup.sh needs the MinIO client mc on this machine (see MinIO's docs for mc)" >&2
  exit 1
}
# The user name doubles as the key prefix and goes into sed patterns and JSON.
if ! [[ $CCB_USER =~ ^[a-z0-9][a-z0-9._-]{2,31}$ ]]; then
  echo "CCB_USER must be 3-32 characters of a-z 0-9 . _ -" >&2
  exit 2
fi
if ! [[ $HANDOFF_DAYS =~ ^[0-9]+$ ]]; then
  echo "HANDOFF_DAYS must be a number of days (0: no rule)" >&2
  exit 2
fi

# A throwaway alias, removed on exit, so the root credentials do not stay in ~/.mc/config.json.
ALIAS="ccbundle-setup-$$"
policy_file=$(mktemp)
trap 'mc alias remove "$ALIAS" >/dev/null 2>&1 || true; rm -f "$policy_file"' EXIT
mc alias set "$ALIAS" "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

mc mb --ignore-existing "$ALIAS/$BUCKET"

# policy.json is written for bucket "ccbundle" and user "alice"; render it for this one.
sed -e "s#arn:aws:s3:::ccbundle#arn:aws:s3:::$BUCKET#g" -e "s#alice#$CCB_USER#g" policy.json >"$policy_file"
policy="ccbundle-$CCB_USER"
mc admin policy create "$ALIAS" "$policy" "$policy_file"

# 160 random bits as 40 hex characters (MinIO's limit for a secret key); shown once
# below, then kept only by MinIO and in the user's ~/.aws/credentials.
secret=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
mc admin user add "$ALIAS" "$CCB_USER" "$secret" >/dev/null
if ! out=$(mc admin policy attach "$ALIAS" "$policy" --user "$CCB_USER" 2>&1); then
  if grep -qi "already" <<<"$out"; then
    echo "policy $policy was already attached to $CCB_USER"
  else
    echo "$out" >&2
    exit 1
  fi
fi

if [[ $HANDOFF_DAYS -gt 0 ]]; then
  prefix="$CCB_USER/ccbundle/v1/blobs/"
  # `mc ilm rule add` adds one rule and keeps the rules of other users; `mc ilm import
  # < lifecycle.json` would replace the bucket's whole lifecycle configuration.
  if mc ilm rule ls "$ALIAS/$BUCKET" 2>/dev/null | grep -qF "$prefix"; then
    echo "a lifecycle rule for $prefix exists already; left as is (mc ilm rule edit to change it)"
  else
    mc ilm rule add --prefix "$prefix" --expire-days "$HANDOFF_DAYS" "$ALIAS/$BUCKET"
  fi
fi

cat <<DONE

Done. Give $CCB_USER these lines for ~/.aws/credentials (the secret is not shown again):

[nas]
aws_access_key_id = $CCB_USER
aws_secret_access_key = $secret

and this store setting:

export CCBUNDLE_STORE='s3://$BUCKET/$CCB_USER?endpoint=$MINIO_URL&region=us-east-1&profile=nas'

Then: ccbundle doctor
DONE
