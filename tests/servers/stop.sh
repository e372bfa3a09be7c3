#!/usr/bin/env bash
# Stops every server start.sh started under DIR.
DIR=${1:?usage: stop.sh DIR}
for pidfile in "$DIR"/*/pid "$DIR"/*/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null
done
sleep 1
for pidfile in "$DIR"/*/pid "$DIR"/*/*.pid; do
  [ -f "$pidfile" ] || continue
  kill -9 "$(cat "$pidfile")" 2>/dev/null
  rm -f "$pidfile"
done
exit 0
