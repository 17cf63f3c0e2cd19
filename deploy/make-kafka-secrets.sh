#!/bin/sh
# Random passwords for compose.yaml's Kafka users, one owner-only file each (kept out of git).
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
umask 077
for user in admin worker client; do
  file="$dir/kafka-$user-password"
  # Letters and digits only: the value goes into --add-scram [..] and JAAS "..." unescaped.
  [ -s "$file" ] || LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$file"
done
echo "passwords in $dir (existing ones kept)"
