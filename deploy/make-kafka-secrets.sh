#!/bin/sh
# Random passwords for compose.yaml's Kafka users, one file each (kept out of git).
# The folder is owner-only; the files in it are readable by all (0644), because compose
# bind-mounts a file secret with its host owner and mode (uid, gid and mode are swarm-only)
# and the containers read them as users of their own: Kafka's appuser, the worker's
# phoenix (10001). An owner-only file would be unreadable to both.
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
for user in admin worker client; do
  file="$dir/kafka-$user-password"
  # Letters and digits only: the value goes into --add-scram [..] and JAAS "..." unescaped.
  [ -s "$file" ] || (umask 077 && LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$file")
  chmod 644 "$file"
done
echo "passwords in $dir (existing ones kept)"
