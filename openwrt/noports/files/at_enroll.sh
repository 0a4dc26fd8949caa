#!/bin/sh
# at_enroll.sh - APKAM enrollment of the NoPorts device atSign from /etc/config/sshnpd.
#
#   at_enroll.sh [run] [section]  enroll in the foreground (every sshnpd section,
#                                 or only the named one)
#   at_enroll.sh start [section]  enroll detached; output goes to the log file
#   at_enroll.sh stop             stop a detached enrollment
#   at_enroll.sh status [section] key=value lines (for LuCI) then the log tail; for every
#                                 sshnpd section whose daemon keeps a status file
#                                 /var/run/sshnpd/<section>.status (JSON), a line
#                                 daemon.<section>=<that JSON on one line>
#
# For each section: needs atsign, device and otp; writes
# <home>/.atsign/keys/<atsign>_key.atKeys (or 'keyfile'); waits until the
# request is approved on a machine that already holds the atSign's keys:
#   at_activate approve -a <atsign> --arx noports --drx <device>
# On success the otp option is deleted from UCI and sshnpd is restarted.

# Called through rpcd by LuCI: never trust the caller's environment.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
IFS='
 	'
unset ENV CDPATH

CONF=sshnpd
AT_ACTIVATE=/usr/bin/at_activate
LOG=/var/log/at_enroll.log
PIDFILE=/var/run/at_enroll.pid
CHILDFILE=/var/run/at_enroll.child
STATUS_DIR=/var/run/sshnpd
NAMESPACES="sshnp:rw,sshrvd:rw"
APP=noports

. /lib/functions.sh

case "$0" in
	/*) SELF="$0" ;;
	*) SELF="$(pwd)/$0" ;;
esac

section_paths() {
	# sets atsign device otp user home keyfile for section $1
	config_get atsign "$1" atsign
	config_get device "$1" device
	config_get otp "$1" otp
	config_get user "$1" user root
	config_get home "$1" home
	config_get keyfile "$1" keyfile
	if [ -n "$atsign" ]; then
		case "$atsign" in @*) ;; *) atsign="@$atsign" ;; esac
	fi
	if [ -z "$home" ]; then
		if [ "$user" = root ]; then home=/root; else home="/home/$user"; fi
	fi
	[ -n "$keyfile" ] || keyfile="$home/.atsign/keys/${atsign}_key.atKeys"
}

enroll_section() {
	local cfg="$1" atsign device otp user home keyfile rc apid
	section_paths "$cfg"

	[ -n "$atsign" ] || { echo "at_enroll: section $cfg: set option 'atsign' in /etc/config/$CONF"; return 1; }
	[ -n "$device" ] || { echo "at_enroll: section $cfg: set option 'device' in /etc/config/$CONF"; return 1; }
	if [ -f "$keyfile" ]; then
		echo "at_enroll: $keyfile already exists; $atsign is enrolled (delete the file to enroll again)"
		return 0
	fi
	[ -n "$otp" ] || { echo "at_enroll: section $cfg: set option 'otp' in /etc/config/$CONF (make one with: at_activate otp -a $atsign)"; return 1; }

	umask 077
	mkdir -p "${keyfile%/*}" || return 1
	echo "at_enroll: requesting enrollment of $atsign as device '$device'"
	echo "at_enroll: approve it where $atsign is already activated with:"
	echo "  at_activate approve -a $atsign --arx $APP --drx $device"

	"$AT_ACTIVATE" enroll -a "$atsign" -s "$otp" -p "$APP" -k "$keyfile" -d "$device" -n "$NAMESPACES" &
	apid=$!
	echo "$apid" > "$CHILDFILE"
	wait "$apid"
	rc=$?
	rm -f "$CHILDFILE"

	if [ "$rc" -eq 0 ] && [ -f "$keyfile" ]; then
		chmod 600 "$keyfile"
		uci -q delete "$CONF.$cfg.otp" && uci -q commit "$CONF"
		echo "at_enroll: enrolled; keys written to $keyfile; otp removed from /etc/config/$CONF"
		[ -x /etc/init.d/sshnpd ] && /etc/init.d/sshnpd restart >/dev/null 2>&1
		return 0
	fi
	echo "at_enroll: enrollment of $atsign failed (at_activate exit $rc)"
	return 1
}

ENROLL_RC=0
enroll_each() {
	enroll_section "$1" || ENROLL_RC=1
}

do_run() {
	config_load "$CONF"
	if [ -n "$1" ]; then
		enroll_section "$1" || ENROLL_RC=1
	else
		config_foreach enroll_each sshnpd
	fi
	return $ENROLL_RC
}

is_running() {
	local pid
	[ -s "$PIDFILE" ] || return 1
	read -r pid < "$PIDFILE"
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

do_start() {
	if is_running; then
		echo "at_enroll: an enrollment is already running"
		return 0
	fi
	case "$1" in *[!A-Za-z0-9_]*) echo "at_enroll: bad section name"; return 1 ;; esac
	umask 077
	mkdir -p "${LOG%/*}" "${PIDFILE%/*}"
	: > "$LOG"
	# Detached from the caller (rpcd kills its direct child after its timeout
	# and closes the output pipe): no inherited stdin/stdout, HUP ignored.
	( trap '' HUP; exec /bin/sh "$SELF" _bg "$1" ) < /dev/null >> "$LOG" 2>&1 &
	echo "$!" > "$PIDFILE"
	echo "at_enroll: started; log in $LOG"
}

do_bg() {
	trap 'kill "$(cat "$CHILDFILE" 2>/dev/null)" 2>/dev/null; echo "at_enroll: stopped"; rm -f "$PIDFILE" "$CHILDFILE"; exit 143' TERM INT
	do_run "$1"
	rc=$?
	echo "at_enroll: finished (exit $rc)"
	rm -f "$PIDFILE"
	return $rc
}

do_stop() {
	local pid
	if is_running; then
		read -r pid < "$PIDFILE"
		kill "$pid" 2>/dev/null
		echo "at_enroll: stopping $pid"
	else
		echo "at_enroll: not running"
	fi
}

do_status() {
	local cfg="$1" atsign device otp user home keyfile
	config_load "$CONF"
	[ -n "$cfg" ] || cfg="$(first_section)"
	[ -n "$cfg" ] && section_paths "$cfg"
	echo "section=$cfg"
	echo "atsign=$atsign"
	echo "device=$device"
	if [ -n "$otp" ]; then echo "otp_set=1"; else echo "otp_set=0"; fi
	echo "keyfile=$keyfile"
	if [ -n "$keyfile" ] && [ -f "$keyfile" ]; then echo "key_present=1"; else echo "key_present=0"; fi
	if is_running; then echo "running=1"; else echo "running=0"; fi
	config_foreach daemon_status sshnpd
	echo "---"
	[ -f "$LOG" ] && tail -n 40 "$LOG"
	return 0
}

daemon_status() {
	# The daemon's state file for section $1, relayed for LuCI (its ACL cannot name the
	# per-section files without a wildcard); JSON has no raw newlines inside strings.
	local f="$STATUS_DIR/$1.status"
	[ -f "$f" ] || return 0
	printf 'daemon.%s=%s\n' "$1" "$(head -c 4096 "$f" | tr -d '\r\n')"
}

FIRST=
_first() { [ -n "$FIRST" ] || FIRST="$1"; }
first_section() {
	FIRST=
	config_foreach _first sshnpd
	echo "$FIRST"
}

cmd="$1"
[ $# -gt 0 ] && shift
case "$cmd" in
	""|run) do_run "$1" ;;
	start) do_start "$1" ;;
	stop) do_stop ;;
	status) do_status "$1" ;;
	_bg) do_bg "$1" ;;
	*) echo "usage: $0 [run|start|stop|status] [section]" >&2; exit 2 ;;
esac
