// Scenarios for tests/luci_browser.rs: each loads a view of luci-app/ through the LuCI double,
// drives it through DOM events like a user, checks what it shows and what it calls, then posts
// { checks: [{name, ok, detail}], calls: LuciDouble.calls, error } to /result?scenario=<name>.
(function(window) {
'use strict';

var document = window.document, D = window.LuciDouble;
var VIEWS = '/luci-app/htdocs/luci-static/resources/view/noports/';
var ACL = '/luci-app/root/usr/share/rpcd/acl.d/luci-app-noports.json';
var UCI_CONFIG = '/openwrt/noports/files/sshnpd.config';
var SCRIPT = '/usr/bin/at_enroll.sh';
var SID = 'cfg01e2b4';

var checks = [], uncaught = [];

window.addEventListener('error', function(e) { uncaught.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function(e) { uncaught.push('unhandled rejection: ' + String(e.reason && (e.reason.stack || e.reason.message) || e.reason)); });

function check(name, ok, detail) {
	checks.push({ name: name, ok: !!ok, detail: ok ? '' : String(detail === undefined ? '' : detail) });
	return !!ok;
}

function sleep(ms) { return new Promise(function(r) { setTimeout(r, ms); }); }

function waitFor(pred, ms, label) {
	var until = Date.now() + ms;
	return new Promise(function(resolve, reject) {
		(function poll() {
			var v;
			try { v = pred(); } catch (e) { v = false; }
			if (v) return resolve(v);
			if (Date.now() > until) return reject(new Error('timed out waiting for ' + label));
			setTimeout(poll, 25);
		})();
	});
}

function get(url) {
	return fetch(url, { cache: 'no-store' }).then(function(r) {
		if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
		return r.text();
	});
}

function $(id) { return document.getElementById(id); }
function text(id) { var n = $(id); return n ? n.textContent : '<no #' + id + '>'; }
function widget(opt) { return $('widget.cbid.sshnpd.' + SID + '.' + opt); }

// Types into a field the way a browser does: value, then input and change events.
function type(el, value) {
	el.focus();
	el.value = value;
	el.dispatchEvent(new Event('input', { bubbles: true }));
	el.dispatchEvent(new Event('change', { bubbles: true }));
	el.blur();
}

function click(el) {
	el.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true, view: window }));
}

function callsOf(prefix) {
	return D.calls.filter(function(c) { return c.fn.indexOf(prefix) === 0; });
}

function stopView() {
	// Ends the polls of a rendered view before the next one is rendered in its place.
	D.backend = D.backend || {};
	window.L.poll.queue.forEach(function(e) { e.active = false; });
	$('view').innerHTML = '';
	$('modal').style.display = 'none';
}

// The output of 'at_enroll.sh status' for a state object.
function statusOutput(st) {
	var out = [
		'section=' + SID,
		'atsign=' + st.atsign,
		'device=' + st.device,
		'otp_set=' + (st.otp ? 1 : 0),
		'keyfile=/root/.atsign/keys/' + st.atsign + '_key.atKeys',
		'key_present=' + (st.key ? 1 : 0),
		'running=' + (st.running ? 1 : 0)
	];
	Object.keys(st.daemons || {}).forEach(function(sid) {
		out.push('daemon.' + sid + '=' + JSON.stringify(st.daemons[sid]));
	});
	out.push('---');
	return out.concat(st.log).join('\n') + '\n';
}

// ------------------------------------------------------------------------ config

function scenarioConfig() {
	var cfgText, sections;
	return Promise.all([ get(ACL), get(UCI_CONFIG) ]).then(function(r) {
		D.acl = JSON.parse(r[0]);
		cfgText = r[1];

		// 1. A router whose daemon keeps no status file and is not running.
		sections = D.loadUciConfig('sshnpd', cfgText, [ SID ]);
		var bare = { atsign: '@atsign', device: 'devicename', otp: '', key: false, running: false, log: [] };
		D.backend = {
			ubus: { 'service.list': function() { return {}; } },
			exec: function(cmd, argv) {
				return { code: 0, stdout: statusOutput(bare), stderr: '' };
			}
		};
		return D.runView(VIEWS + 'config.js');
	}).then(function() {
		check('without a status file: service shown as not running', /Not running/.test(text('noports-status')), text('noports-status'));
		check('without a status file: no daemon status, said so', /no status reported/.test(text('noports-daemon')), text('noports-daemon'));
		check('without a status file: no last session, said so', /none recorded/.test(text('noports-last-session')), text('noports-last-session'));
		check('without a status file: enrollment shown as not enrolled', /not enrolled/.test(text('noports-enrollment')), text('noports-enrollment'));
		stopView();

		// 2. The shipped /etc/config/sshnpd on a running, enrolled daemon with a status file.
		sections = D.loadUciConfig('sshnpd', cfgText, [ SID ]);
		window.L.uci.pending = [];
		var st = {
			atsign: '@atsign', device: 'devicename', otp: '', key: true, running: false,
			log: [ 'at_enroll: enrolled; keys written to /root/.atsign/keys/@atsign_key.atKeys' ],
			daemons: {}
		};
		st.daemons[SID] = { state: 'running', atsign: '@atsign', device: 'devicename',
			last_session: { at: '2026-12-02T18:04:05Z', from: '@alice', service: 'localhost:22' } };
		var instances = {};
		instances[SID] = { running: true, pid: 4242, command: [ '/usr/bin/sshnpd' ] };
		D.backend = {
			ubus: { 'service.list': function(args) { return args.name == 'sshnpd' ? { sshnpd: { instances: instances } } : {}; } },
			exec: function(cmd, argv) {
				if (cmd == SCRIPT && argv.join(' ') == 'status')
					return { code: 0, stdout: statusOutput(st), stderr: '' };
				return { code: 2, stdout: '', stderr: 'unexpected' };
			}
		};
		D.calls.push({ fn: 'scenario.phase', args: [ 'shipped config' ], t: Date.now() - D.t0 });
		return D.runView(VIEWS + 'config.js');
	}).then(function() {
		var sec = sections[0], opts = Object.keys(sec).filter(function(k) { return k.charAt(0) != '.'; });
		check('the shipped config has the documented options',
			[ 'enabled', 'atsign', 'manager', 'device', 'args', 'otp' ].every(function(o) { return opts.indexOf(o) >= 0; }), opts.join(','));
		opts.forEach(function(o) {
			var w = widget(o);
			if (!check('option ' + o + ' is rendered', w, 'no #widget.cbid.sshnpd.' + SID + '.' + o))
				return;
			if (w.type == 'checkbox')
				check('option ' + o + ' shows ' + sec[o], w.checked == (sec[o] == '1'), 'checked=' + w.checked);
			else
				check('option ' + o + ' shows \'' + sec[o] + '\'', w.value === sec[o], 'value=' + w.value);
		});
		check('the list option arg is rendered', $('widget.cbid.sshnpd.' + SID + '.arg'), 'no arg list');
		check('the passcode is a password field', widget('otp') && widget('otp').type == 'password', widget('otp') && widget('otp').type);
		check('labels name the fields', /Device atSign/.test(text('cbi-sshnpd-' + SID + '-atsign')), text('cbi-sshnpd-' + SID + '-atsign'));

		check('service status from ubus service list', /cfg01e2b4: running/.test(text('noports-status')), text('noports-status'));
		check('daemon state from the status file', /cfg01e2b4: running as @atsign \(device devicename\)/.test(text('noports-daemon')), text('noports-daemon'));
		check('last session from the status file', text('noports-last-session') == 'cfg01e2b4: 2026-12-02 18:04:05 UTC from @alice to localhost:22', text('noports-last-session'));
		check('enrollment status from at_enroll.sh status', /enrolled, keys at \/root\/\.atsign\/keys\/@atsign_key\.atKeys/.test(text('noports-enrollment')), text('noports-enrollment'));

		// An invalid device name: Save & Apply must write nothing and say why.
		var apply = document.querySelector('.cbi-page-actions .cbi-button-apply');
		if (!check('a Save & Apply button', apply, 'none'))
			throw new Error('no Save & Apply button');
		var before = D.calls.length;
		type(widget('device'), 'Bad Name');
		check('an invalid device name is flagged while typing', widget('device').classList.contains('cbi-input-invalid'), widget('device').className);
		click(apply);
		return waitFor(function() { return callsOf('ui.showModal').length; }, 3000, 'the save error').then(function() {
			return sleep(200);
		}).then(function() {
			var after = D.calls.slice(before).map(function(c) { return c.fn; });
			check('an invalid form is not saved', after.every(function(f) { return !/^uci\.(set|unset|save|apply)/.test(f); }), after.join(','));
			check('the save error names the field', /Device name/.test(text('modal')), text('modal'));
			window.L.ui.hideModal();

			// Valid input, typed like a user (atSign without @, spaces in the manager list).
			click(widget('enabled'));
			type(widget('atsign'), 'my_router');
			type(widget('manager'), '@alice, bob');
			type(widget('device'), 'router');
			type(widget('args'), '-v --permit-open localhost:22');
			type(widget('otp'), '123456');
			check('the corrected device name is no longer flagged', !widget('device').classList.contains('cbi-input-invalid'), widget('device').className);
			click(document.querySelector('.cbi-page-actions .cbi-button-apply'));
			return waitFor(function() { return callsOf('uci.apply').length; }, 5000, 'uci.apply');
		});
	}).then(function() {
		var sets = callsOf('uci.').filter(function(c) { return /^uci\.(set|unset|save|apply)$/.test(c.fn); })
			.map(function(c) { return c.fn + ' ' + c.args.join(' '); });
		var want = [
			'uci.set sshnpd ' + SID + ' enabled 1',
			'uci.set sshnpd ' + SID + ' atsign @my_router',
			'uci.set sshnpd ' + SID + ' manager @alice,@bob',
			'uci.set sshnpd ' + SID + ' device router',
			'uci.set sshnpd ' + SID + ' otp 123456',
			'uci.set sshnpd ' + SID + ' args -v --permit-open localhost:22',
			'uci.save ',
			'uci.apply true'
		];
		check('Save & Apply writes exactly the changed options, saves, then applies', JSON.stringify(sets) == JSON.stringify(want), sets.join(' | '));
		return waitFor(function() { return widget('atsign') && widget('atsign').value == '@my_router'; }, 3000, 'the re-rendered form');
	}).then(function() {
		check('after saving the form shows the stored values', widget('manager').value == '@alice,@bob' && widget('enabled').checked, widget('manager').value);
		check('the state block survives the re-render', /from @alice to localhost:22/.test(text('noports-last-session')), text('noports-last-session'));
		check('the page polls its state', callsOf('poll.add').some(function(c) { return c.args[0] == '5'; }), JSON.stringify(callsOf('poll.add')));
		return waitFor(function() { return callsOf('rpc.service.list').length >= 4; }, 5000, 'a state poll').then(function() {
			check('the state poll re-reads service list and at_enroll.sh status', true);
		}, function(e) { check('the state poll re-reads service list and at_enroll.sh status', false, e.message); });
	});
}

// ------------------------------------------------------------------------ enroll

function scenarioEnroll() {
	// Polls every 3 s on a router; here every 750 ms, so the enrollment spans several polls.
	var ENROLL_MS = 3000, st, started = null, finished = null;
	D.pollSpeedup = 4;
	return get(ACL).then(function(acl) {
		D.acl = JSON.parse(acl);
		st = { atsign: '@my_router', device: 'router', otp: '123456', key: false, running: false, log: [] };
		D.backend = {
			// at_enroll.sh as the router runs it: start returns at once and the enrollment goes on
			// in the background until it is approved (here: ENROLL_MS later).
			exec: function(cmd, argv) {
				var a = argv.join(' ');
				if (cmd != SCRIPT)
					return { code: 127, stdout: '', stderr: 'not found' };
				if (a == 'status')
					return new Promise(function(r) { setTimeout(function() { r({ code: 0, stdout: statusOutput(st), stderr: '' }); }, 30); });
				if (a == 'start') {
					if (st.running)
						return { code: 0, stdout: 'at_enroll: an enrollment is already running\n', stderr: '' };
					st.running = true;
					started = Date.now();
					st.log = [ 'at_enroll: requesting enrollment of @my_router as device \'router\'',
						'at_enroll: approve it where @my_router is already activated with:',
						'  at_activate approve -a @my_router --arx noports --drx router' ];
					setTimeout(function() {
						st.running = false; st.key = true; st.otp = '';
						finished = Date.now();
						st.log.push('at_enroll: enrolled; keys written to /root/.atsign/keys/@my_router_key.atKeys; otp removed from /etc/config/sshnpd');
						st.log.push('at_enroll: finished (exit 0)');
					}, ENROLL_MS);
					return { code: 0, stdout: 'at_enroll: started; log in /var/log/at_enroll.log\n', stderr: '' };
				}
				if (a == 'stop') {
					st.running = false;
					return { code: 0, stdout: 'at_enroll: stopping\n', stderr: '' };
				}
				// 'run' (or no argument) enrolls in the foreground: the RPC would hang until approval.
				return new Promise(function(r) { setTimeout(function() { r({ code: 0, stdout: '', stderr: '' }); }, 25000); });
			}
		};

		// The ACL as rpcd applies it: exec of the bare script would allow any argument.
		var aclExec = function(argv) {
			return D.aclExecAllowed(SCRIPT, argv);
		};
		check('ACL: at_enroll.sh status, start and stop may run', aclExec([ 'status' ]) && aclExec([ 'start' ]) && aclExec([ 'stop' ]), '');
		check('ACL: at_enroll.sh run, _bg and no argument may not (foreground enrollment would block the RPC)',
			!aclExec([]) && !aclExec([ 'run' ]) && !aclExec([ '_bg' ]) && !aclExec([ 'status', 'x' ]), '');

		return D.runView(VIEWS + 'enroll.js');
	}).then(function(v) {
		var btns = document.querySelectorAll('#view .cbi-page-actions button');
		var enroll = btns[0], cancel = btns[1];
		check('Enroll and Cancel buttons', enroll && cancel && /Enroll/.test(enroll.textContent) && /Cancel/.test(cancel.textContent),
			Array.prototype.map.call(btns, function(b) { return b.textContent; }).join(','));
		check('ready to enroll: Enroll enabled, Cancel disabled', !enroll.disabled && cancel.disabled, enroll.disabled + '/' + cancel.disabled);
		check('the approve command is shown', /at_activate approve -a @my_router --arx noports --drx router/.test($('view').textContent), $('view').textContent);
		check('no LuCI form buttons on this tab', !document.querySelector('.cbi-button-apply'), 'Save & Apply present');
		check('the tab polls at_enroll.sh status', callsOf('poll.add').length == 1, JSON.stringify(callsOf('poll.add')));

		var beats = 0, timer = setInterval(function() { beats++; }, 50);
		var clickedAt = Date.now();
		click(enroll);
		return waitFor(function() { return /Enrollment in progress/.test($('view').textContent); }, 5000, 'the in-progress note').then(function() {
			// Right after the click handler settled, before the next poll could repair anything.
			return sleep(50);
		}).then(function() {
			check('while enrolling: Enroll disabled, Cancel enabled', enroll.disabled && !cancel.disabled,
				'Enroll disabled=' + enroll.disabled + ', Cancel disabled=' + cancel.disabled);
			check('while enrolling: the log shows the request', /requesting enrollment of @my_router/.test(document.querySelector('#view textarea').value), document.querySelector('#view textarea').value);
			var start = callsOf('fs.exec').filter(function(c) { return c.args.join(' ') == SCRIPT + ' start'; })[0];
			check('start returned before the enrollment finished (detached)', start && start.done != null && finished == null,
				JSON.stringify(start) + ' finished=' + finished);
			check('the click returned at once', Date.now() - clickedAt < ENROLL_MS, (Date.now() - clickedAt) + ' ms');
			return waitFor(function() { return /Enrolled: keys found/.test($('view').textContent); }, 10000, 'the enrolled note');
		}).then(function() {
			clearInterval(timer);
			var during = callsOf('fs.exec').filter(function(c) {
				return c.args.join(' ') == SCRIPT + ' status' && c.t >= started - D.t0 && c.t <= finished - D.t0;
			});
			check('status was polled while the enrollment ran', during.length >= 2, during.length + ' polls');
			check('the page kept running while enrolling', beats >= (ENROLL_MS / 50) / 2, beats + ' timer ticks');
			check('enrolled: Enroll and Cancel disabled', enroll.disabled && cancel.disabled, enroll.disabled + '/' + cancel.disabled);
			check('enrolled: the log shows the result', /enrolled; keys written/.test(document.querySelector('#view textarea').value), document.querySelector('#view textarea').value);
			check('no failure notification', !callsOf('ui.addNotification').length, JSON.stringify(callsOf('ui.addNotification')));
			check('no call was denied by the ACL', !D.calls.some(function(c) { return c.denied; }), JSON.stringify(D.calls.filter(function(c) { return c.denied; })));
		});
	});
}

// ------------------------------------------------------------------------ runner

var SCENARIOS = { config: scenarioConfig, enroll: scenarioEnroll };

function finish(error) {
	check('no uncaught errors', !uncaught.length, uncaught.join(' | '));
	var verdict = { scenario: window.scenario, checks: checks, calls: D.calls, error: error || null };
	var failed = checks.filter(function(c) { return !c.ok; });
	var pre = $('result');
	pre.textContent = (error ? 'ERROR: ' + error + '\n' : '') + checks.map(function(c) {
		return (c.ok ? '[ok]   ' : '[FAIL] ') + c.name + (c.ok ? '' : ': ' + c.detail);
	}).join('\n');
	if (failed.length || error) pre.className = 'failed';
	return fetch('/result?scenario=' + encodeURIComponent(window.scenario), {
		method: 'POST', body: JSON.stringify(verdict), headers: { 'Content-Type': 'application/json' }
	});
}

window.LuciScenarios = {
	run: function(name) {
		window.scenario = name;
		var fn = SCENARIOS[name];
		Promise.resolve().then(function() {
			if (!fn) throw new Error('no scenario ' + name);
			return fn();
		}).then(function() { return sleep(50).then(function() { return finish(null); }); },
		function(e) { return finish(String(e && (e.stack || e.message) || e)); });
	}
};

})(window);
