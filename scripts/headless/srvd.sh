#!/bin/sh
# NoPorts relay (srvd) without systemd: started at boot by cron, directly (headless, logs in
# ~/.sshnpd/logs) or inside a tmux session named srvd. Installed by scripts/install.sh,
# which writes this file once and never overwrites it: edit the settings below.
# SCRIPT METADATA
binary_path="$HOME/.local/bin"
atsign="@my_rvd"      # MANDATORY: Relay address (atSign)
internet_address=""   # MANDATORY: Host name or IP address clients and daemons connect to
v="-v"                # Comment to disable verbose logging
additional_args=""    # any other srvd options
# END METADATA

sleep 10 # let the network come up
while true; do
	# shellcheck disable=SC2086
	"$binary_path"/srvd -a "$atsign" -i "$internet_address" $v $additional_args
	sleep 10
done
