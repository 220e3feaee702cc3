#!/bin/sh
# keepalived's notify script (notify in keepalived.conf): appends every
# VRRP transition of the pen instance to LOGFILE (default
# /var/log/pen-vrrp.log), one line each; keepalived itself reports them
# to syslog.
#
#   notify_pen.sh [LOGFILE] TYPE NAME STATE PRIORITY
#
# keepalived appends TYPE (INSTANCE or GROUP), NAME, STATE (MASTER,
# BACKUP, FAULT or STOP) and PRIORITY to the words of the notify line.
# pen needs nothing done: it listens on the address all the time.
set -u

log=/var/log/pen-vrrp.log
if [ $# -ge 5 ]; then
    log=$1
    shift
fi
if [ $# -lt 3 ]; then
    echo "usage: ${0##*/} [LOGFILE] TYPE NAME STATE [PRIORITY]" >&2
    exit 2
fi

printf '%s vrrp %s %s is now %s (priority %s) on %s\n' \
    "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$1" "$2" "$3" "${4:-?}" "$(uname -n)" >>"$log"
