#!/bin/sh
# A stand-in for systemctl (tests/test_spawn.py installs it as systemctl first on PATH): appends its
# arguments to $SYSTEMCTL_LOG, keeps each unit's state in $SYSTEMCTL_DIR/UNIT (start: active,
# stop: inactive) and answers is-active from it. $SYSTEMCTL_FAIL=start makes start exit 1.
echo "$*" >> "$SYSTEMCTL_LOG"
verb=$1
unit=$2
state="$SYSTEMCTL_DIR/$unit"
case "$verb" in
    start)
        if [ "$SYSTEMCTL_FAIL" = start ]; then
            echo "Failed to start $unit.service: Unit $unit.service not found." >&2
            exit 1
        fi
        echo active > "$state" ;;
    stop) echo inactive > "$state" ;;
    is-active)
        if [ -f "$state" ]; then cat "$state"; else echo inactive; fi
        [ "$(cat "$state" 2>/dev/null)" = active ] ;;
esac
