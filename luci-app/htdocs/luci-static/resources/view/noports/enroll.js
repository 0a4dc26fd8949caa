'use strict';
'require view';
'require fs';
'require ui';
'require poll';

// Enrollment runs detached (at_enroll.sh start) so it survives the RPC and
// rpcd exec timeouts; this view polls 'at_enroll.sh status' for its progress.
//
// The one-time passcode is typed here and written, mode 0600, to the one file the ACL lets
// this app write (and not read); at_enroll.sh takes it from there. It never goes into UCI,
// which the app can read.

var SCRIPT = '/usr/bin/at_enroll.sh';
var PASSCODE = '/var/run/at_enroll.passcode';

function parseStatus(res) {
	var st = { log: '' },
	    lines = String((res && res.stdout) || '').split('\n'),
	    i, eq;
	for (i = 0; i < lines.length; i++) {
		if (lines[i] === '---') {
			st.log = lines.slice(i + 1).join('\n');
			break;
		}
		eq = lines[i].indexOf('=');
		if (eq > 0)
			st[lines[i].substring(0, eq)] = lines[i].substring(eq + 1);
	}
	return st;
}

function fetchStatus() {
	return fs.exec(SCRIPT, [ 'status' ]).then(parseStatus).catch(function(err) {
		return { error: String(err && err.message || err), log: '' };
	});
}

return view.extend({
	load: function() {
		return fetchStatus();
	},

	updateView: function(st) {
		var info = this.infoNode, notes = [];

		if (st.error) {
			notes.push(E('p', { 'class': 'alert-message warning' }, [ _('Cannot read the enrollment status: %s').format(st.error) ]));
		}
		else {
			if (!st.atsign)
				notes.push(E('p', {}, [ _('Set the device atSign on the Configuration tab.') ]));
			if (!st.device)
				notes.push(E('p', {}, [ _('Set the device name on the Configuration tab.') ]));

			if (st.key_present === '1') {
				notes.push(E('p', {}, [ _('Enrolled: keys found at %s.').format(st.keyfile) ]));
			}
			else {
				if (st.running !== '1')
					notes.push(E('p', {}, [
						_('Enter a one-time passcode below. Make one on a machine where the atSign is already enrolled with:'), ' ',
						E('code', {}, [ 'at_activate otp -a ' + (st.atsign || '<device atSign>') ])
					]));
				if (st.atsign && st.enrollment_id)
					notes.push(E('p', {}, [
						_('Approve this request there with:'), ' ',
						E('code', {}, [ 'at_activate approve -a ' + st.atsign + ' -i ' + st.enrollment_id ])
					]));
				else if (st.atsign && st.device)
					notes.push(E('p', {}, [
						_('After pressing Enroll, this page shows the command that approves exactly this request.')
					]));
			}
			if (st.running === '1')
				notes.push(E('p', {}, [ E('em', {}, [ _('Enrollment in progress, waiting for approval...') ]) ]));
		}

		while (info.firstChild)
			info.removeChild(info.firstChild);
		notes.forEach(function(n) { info.appendChild(n); });

		this.otpSet = st.otp_set === '1';
		var ready = !st.error && st.atsign && st.device && st.key_present !== '1';
		this.startBtn.disabled = !(ready && st.running !== '1');
		this.passNode.disabled = this.startBtn.disabled;
		this.stopBtn.disabled = st.running !== '1';
		this.logNode.value = st.log || '';
		this.logNode.scrollTop = this.logNode.scrollHeight;
	},

	refresh: function() {
		return fetchStatus().then(L.bind(this.updateView, this));
	},

	run: function(cmd) {
		this.startBtn.disabled = true;
		this.stopBtn.disabled = true;
		return fs.exec(SCRIPT, [ cmd ]).then(L.bind(function(res) {
			if (res.code !== 0)
				ui.addNotification(null, E('p', {}, [ String(res.stdout || '') + String(res.stderr || '') ]), 'warning');
			return this.refresh();
		}, this)).catch(L.bind(function(err) {
			ui.addNotification(null, E('p', {}, [ _('Command failed: %s').format(err.message || err) ]), 'danger');
			return this.refresh();
		}, this));
	},

	// Enroll: the typed passcode goes to PASSCODE (write-only for this app), then the
	// detached enrollment starts and takes it from there.
	enroll: function() {
		var code = String(this.passNode.value || '').trim();
		if (!code && !this.otpSet) {
			ui.addNotification(null, E('p', {}, [ _('Enter the one-time passcode first.') ]), 'warning');
			return Promise.resolve();
		}
		if (code && !/^[\x21-\x7e]+$/.test(code)) {
			ui.addNotification(null, E('p', {}, [ _('The passcode is one word of printable characters.') ]), 'warning');
			return Promise.resolve();
		}
		this.passNode.value = '';
		this.startBtn.disabled = true;
		this.stopBtn.disabled = true;
		if (!code)
			return this.run('start');
		return fs.write(PASSCODE, code + '\n', 384).then(L.bind(function() {
			return this.run('start');
		}, this)).catch(L.bind(function(err) {
			ui.addNotification(null, E('p', {}, [ _('Cannot hand over the passcode: %s').format(err.message || err) ]), 'danger');
			return this.refresh();
		}, this));
	},

	render: function(st) {
		// Not ui.createHandlerFn: it re-enables the clicked button once the handler settles,
		// which would undo the state run() has just shown (Enroll stays disabled while the
		// detached enrollment runs). run() disables both buttons itself.
		this.infoNode = E('div');
		this.startBtn = E('button', {
			'class': 'btn cbi-button cbi-button-action',
			'click': L.bind(function(ev) { ev.preventDefault(); return this.enroll(); }, this)
		}, [ _('Enroll') ]);
		this.passNode = E('input', {
			'type': 'password',
			'class': 'cbi-input-password',
			'autocomplete': 'off',
			'placeholder': _('One-time passcode')
		});
		this.stopBtn = E('button', {
			'class': 'btn cbi-button cbi-button-negative',
			'click': L.bind(function(ev) { ev.preventDefault(); return this.run('stop'); }, this)
		}, [ _('Cancel') ]);
		this.logNode = E('textarea', {
			'class': 'cbi-input-textarea',
			'readonly': 'readonly',
			'rows': 16,
			'wrap': 'off',
			'style': 'width:100%; font-family:monospace'
		});

		this.updateView(st);
		poll.add(L.bind(this.refresh, this), 3);

		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('NoPorts Enrollment') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('Requests APKAM keys for the device atSign with a one-time passcode. The request runs in the background until it is approved, then the daemon is restarted. The passcode is not stored in the configuration.')
			]),
			E('div', { 'class': 'cbi-section' }, [
				this.infoNode,
				E('div', { 'class': 'cbi-page-actions' }, [ this.passNode, ' ', this.startBtn, ' ', this.stopBtn ]),
				this.logNode
			])
		]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
