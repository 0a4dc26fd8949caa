'use strict';
'require view';
'require fs';
'require ui';
'require poll';

// Enrollment runs detached (at_enroll.sh start) so it survives the RPC and
// rpcd exec timeouts; this view polls 'at_enroll.sh status' for its progress.

var SCRIPT = '/usr/bin/at_enroll.sh';

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
				if (st.otp_set !== '1')
					notes.push(E('p', {}, [
						_('Set the enrollment passcode on the Configuration tab. Make one on a machine that holds the atSign\'s keys with:'), ' ',
						E('code', {}, [ 'at_activate otp -a ' + (st.atsign || '<device atSign>') ])
					]));
				if (st.atsign && st.device)
					notes.push(E('p', {}, [
						_('After pressing Enroll, approve the request there with:'), ' ',
						E('code', {}, [ 'at_activate approve -a ' + st.atsign + ' --arx noports --drx ' + st.device ])
					]));
			}
			if (st.running === '1')
				notes.push(E('p', {}, [ E('em', {}, [ _('Enrollment in progress, waiting for approval...') ]) ]));
		}

		while (info.firstChild)
			info.removeChild(info.firstChild);
		notes.forEach(function(n) { info.appendChild(n); });

		var ready = !st.error && st.atsign && st.device && st.otp_set === '1' && st.key_present !== '1';
		this.startBtn.disabled = !(ready && st.running !== '1');
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

	render: function(st) {
		// Not ui.createHandlerFn: it re-enables the clicked button once the handler settles,
		// which would undo the state run() has just shown (Enroll stays disabled while the
		// detached enrollment runs). run() disables both buttons itself.
		this.infoNode = E('div');
		this.startBtn = E('button', {
			'class': 'btn cbi-button cbi-button-action',
			'click': L.bind(function(ev) { ev.preventDefault(); return this.run('start'); }, this)
		}, [ _('Enroll') ]);
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
				_('Requests APKAM keys for the device atSign with the passcode from the Configuration tab. The request runs in the background until it is approved; the passcode is then removed and the daemon restarted.')
			]),
			E('div', { 'class': 'cbi-section' }, [
				this.infoNode,
				E('div', { 'class': 'cbi-page-actions' }, [ this.startBtn, ' ', this.stopBtn ]),
				this.logNode
			])
		]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
