#!/bin/sh
# keepalived's notify script (notify in keepalived.conf): logs every VRRP
# transition of the pen instance to syslog and, if given, to LOGFILE.
#
#   notify_pen.sh [LOGFILE] TYPE NAME STATE PRIORITY
#
# keepalived appends TYPE (INSTANCE or GROUP), NAME, STATE (MASTER,
# BACKUP, FAULT or STOP) and PRIORITY to the words of the notify line.
# pen needs nothing done: it listens on the address all the time.
set -u

log=
if [ $# -ge 5 ]; then
    log=$1
    shift
fi
if [ $# -lt 3 ]; then
    echo "usage: ${0##*/} [LOGFILE] TYPE NAME STATE [PRIORITY]" >&2
    exit 2
fi

line="vrrp $1 $2 is now $3 (priority ${4:-?}) on $(uname -n)"
logger -t pen-vrrp -p daemon.notice "$line" 2>/dev/null || true
if [ -n "$log" ]; then
    printf '%s %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$line" >>"$log"
fi
exit 0
