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
# For each section: needs atsign, device and a one-time passcode (from
# `at_activate otp -a <atsign>` on a machine that holds the atSign's keys); writes
# <home>/.atsign/keys/<atsign>_key.atKeys (or 'keyfile'); waits until the
# request is approved there with the command it prints for this one request:
#   at_activate approve -a <atsign> -i <enrollment id>
# On success sshnpd is restarted.
#
# The passcode never appears in a command line: it is taken from $PASSCODE_DROP (the LuCI
# Enrollment tab writes it there; its ACL may write that one file and read nothing of it) or
# from the UCI option 'otp', which is deleted from UCI (and committed) before the request is
# made, since the LuCI ACL can read /etc/config/sshnpd. It goes to at_activate as a
# mode 0600 file in the 0700 directory $RUN_DIR, removed once at_activate has read it.

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
RUN_DIR=/var/run/at_enroll
PASSCODE_DROP=/var/run/at_enroll.passcode
SSHNPD_INIT=/etc/init.d/sshnpd
NAMESPACES="sshnp:rw,sshrvd:rw"
APP=noports

. /lib/functions.sh
# The init script's checks (sshnpd_check): a section is enrolled only with the values the
# daemon would be started with. Sourcing it only defines functions and constants.
if [ -r "$SSHNPD_INIT" ]; then
	# shellcheck source=sshnpd.init
	. "$SSHNPD_INIT"
	SSHNPD_REFUSAL="not enrolled"
fi

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

# The private directory for passcode files and enrollment ids (root only).
run_dir() {
	if [ -L "$RUN_DIR" ] || { [ -e "$RUN_DIR" ] && [ ! -d "$RUN_DIR" ]; }; then
		echo "at_enroll: $RUN_DIR is not a directory; remove it"
		return 1
	fi
	(umask 077 && mkdir -p "$RUN_DIR") && chmod 700 "$RUN_DIR"
}

# Copies at_activate's output through, and acts on its "Enrollment ID: <id>" line: records
# the id for `status`, prints the approve command for this one request, and removes the
# passcode file (at_activate has read it before it asks).
watch_enroll() {
	local cfg="$1" atsign="$2" pass="$3" line id
	while IFS= read -r line; do
		printf '%s\n' "$line"
		case "$line" in
		"Enrollment ID: "*)
			id="${line#Enrollment ID: }"
			case "$id" in "" | *[!A-Za-z0-9_-]*) continue ;; esac
			rm -f "$pass"
			printf '%s\n' "$id" >"$RUN_DIR/$cfg.id"
			echo "at_enroll: enrollment id $id"
			echo "at_enroll: approve it where $atsign is already activated with:"
			echo "  at_activate approve -a $atsign -i $id"
			;;
		esac
	done
}

enroll_section() {
	local cfg="$1" atsign device otp user home keyfile rc apid pass
	local manager args pidfile authorized_keys proxy
	section_paths "$cfg"

	[ -n "$atsign" ] || { echo "at_enroll: section $cfg: set option 'atsign' in /etc/config/$CONF"; return 1; }
	[ -n "$device" ] || { echo "at_enroll: section $cfg: set option 'device' in /etc/config/$CONF"; return 1; }
	# Run as root for a caller who may write /etc/config/$CONF: the keys go only where the
	# init script allows (keyfile directly in <home>/.atsign/keys/, home per /etc/passwd).
	if ! command -v sshnpd_check >/dev/null 2>&1; then
		echo "at_enroll: $SSHNPD_INIT is missing; cannot check section $cfg"
		return 1
	fi
	sshnpd_check "$cfg" 2>&1 || return 1
	if [ -f "$keyfile" ]; then
		echo "at_enroll: $keyfile already exists; $atsign is enrolled (delete the file to enroll again)"
		return 0
	fi

	umask 077
	run_dir || return 1
	pass="$RUN_DIR/$cfg.passcode"
	rm -f "$pass" "$RUN_DIR/$cfg.id" "$RUN_DIR/$cfg.rc"
	if [ -s "$PASSCODE_DROP" ] && [ ! -L "$PASSCODE_DROP" ]; then
		mv -f "$PASSCODE_DROP" "$pass" || return 1
	elif [ -n "$otp" ]; then
		# printf is a shell builtin: the passcode is in no command line.
		printf '%s\n' "$otp" >"$pass" || return 1
	else
		echo "at_enroll: section $cfg: no passcode: enter one on the LuCI Enrollment tab, or set option 'otp' in /etc/config/$CONF (make one with: at_activate otp -a $atsign)"
		return 1
	fi
	chmod 600 "$pass"
	# Out of UCI before it is used: the LuCI ACL can read /etc/config/$CONF.
	if [ -n "$otp" ]; then
		otp=
		uci -q delete "$CONF.$cfg.otp"
		uci -q commit "$CONF"
		echo "at_enroll: otp removed from /etc/config/$CONF"
	fi

	mkdir -p "${keyfile%/*}" || { rm -f "$pass"; return 1; }
	echo "at_enroll: requesting enrollment of $atsign as device '$device'"

	# The inner sh records at_activate's pid (it execs it) for `stop`.
	(
		sh -c 'echo "$$" >"$1"; shift; exec "$@"' at_enroll "$CHILDFILE" \
			"$AT_ACTIVATE" enroll -a "$atsign" --passcode-file "$pass" -p "$APP" \
			-k "$keyfile" -d "$device" -n "$NAMESPACES" 2>&1
		echo "$?" >"$RUN_DIR/$cfg.rc"
	) | watch_enroll "$cfg" "$atsign" "$pass" &
	apid=$!
	wait "$apid"
	rm -f "$pass" "$CHILDFILE"
	rc=1
	[ -s "$RUN_DIR/$cfg.rc" ] && read -r rc <"$RUN_DIR/$cfg.rc"
	rm -f "$RUN_DIR/$cfg.rc"

	if [ "$rc" -eq 0 ] && [ -f "$keyfile" ]; then
		chmod 600 "$keyfile"
		echo "at_enroll: enrolled; keys written to $keyfile"
		[ -x "$SSHNPD_INIT" ] && "$SSHNPD_INIT" restart >/dev/null 2>&1
		return 0
	fi
	echo "at_enroll: enrollment of $atsign failed (at_activate exit $rc); make a new passcode to try again"
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
	trap 'kill "$(cat "$CHILDFILE" 2>/dev/null)" 2>/dev/null; echo "at_enroll: stopped"; rm -f "$PIDFILE" "$CHILDFILE" "$RUN_DIR"/*.passcode "$RUN_DIR"/*.rc; exit 143' TERM INT
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
	local cfg="$1" atsign device otp user home keyfile id
	config_load "$CONF"
	[ -n "$cfg" ] || cfg="$(first_section)"
	[ -n "$cfg" ] && section_paths "$cfg"
	echo "section=$cfg"
	echo "atsign=$atsign"
	echo "device=$device"
	if [ -n "$otp" ]; then echo "otp_set=1"; else echo "otp_set=0"; fi
	# The id of this section's last request, for the exact approve command.
	if [ -n "$cfg" ] && [ -s "$RUN_DIR/$cfg.id" ]; then
		read -r id <"$RUN_DIR/$cfg.id"
		case "$id" in "" | *[!A-Za-z0-9_-]*) id= ;; esac
		echo "enrollment_id=$id"
	fi
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
