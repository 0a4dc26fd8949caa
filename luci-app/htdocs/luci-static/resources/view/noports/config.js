'use strict';
'require view';
'require form';
'require rpc';
'require poll';
'require fs';

// NoPorts daemon settings: /etc/config/sshnpd, one daemon per 'sshnpd' section.

var callServiceList = rpc.declare({
	object: 'service',
	method: 'list',
	params: [ 'name' ],
	expect: { '': {} }
});

function normalizeAtsign(value) {
	var v = String(value == null ? '' : value).trim();
	if (v.length && v.charAt(0) !== '@')
		v = '@' + v;
	return v;
}

function checkAtsign(v) {
	v = String(v == null ? '' : v).trim().replace(/^@/, '');
	if (!v.length)
		return _('An atSign is required');
	if (/[\s,@]/.test(v))
		return _('An atSign may not contain spaces, commas or a second @');
	return true;
}

function instanceStatus(res) {
	var instances = (res && res.sshnpd && res.sshnpd.instances) || {},
	    names = Object.keys(instances);
	if (!names.length)
		return _('Not running');
	return names.map(function(n) {
		return n + ': ' + (instances[n].running ? _('running') : _('not running'));
	}).join(', ');
}

// 'at_enroll.sh status' prints key=value lines, then '---' and the enrollment log. For every
// sshnpd section whose daemon keeps /var/run/sshnpd/<section>.status, it adds a line
// 'daemon.<section>=<that JSON on one line>' (sshnpd --status-file, see src/daemon/status.rs):
//   {"state":"running","atsign":..,"device":..,"pid":..,"since":..,"sessions":..,
//    "last_session":{"at":..,"from":..,"service":..,"suite":..}}
// state is connecting, running, stopped or failed; the file is missing before the first start.
// (rpcd file ACLs cannot name the per-section files without a wildcard, so the one granted
// status command relays them.)
function parseEnrollStatus(res) {
	var st = { daemons: {} },
	    lines = String((res && res.stdout) || '').split('\n'),
	    i, eq, key, val;
	for (i = 0; i < lines.length && lines[i] !== '---'; i++) {
		eq = lines[i].indexOf('=');
		if (eq <= 0)
			continue;
		key = lines[i].substring(0, eq);
		val = lines[i].substring(eq + 1);
		if (key.indexOf('daemon.') === 0) {
			try { st.daemons[key.substring(7)] = JSON.parse(val); }
			catch (e) { st.daemons[key.substring(7)] = { state: _('unreadable status file') }; }
		}
		else
			st[key] = val;
	}
	return st;
}

function fetchEnrollStatus() {
	return L.resolveDefault(fs.exec('/usr/bin/at_enroll.sh', [ 'status' ]), null).then(function(res) {
		return (res && res.code === 0) ? parseEnrollStatus(res) : null;
	});
}

function enrollmentText(st) {
	if (!st)
		return _('unknown (cannot run at_enroll.sh status)');
	if (st.running === '1')
		return _('in progress, waiting for approval (see the Enrollment tab)');
	if (st.key_present === '1')
		return _('enrolled, keys at %s').format(st.keyfile);
	return _('not enrolled (see the Enrollment tab)');
}

function formatTime(at) {
	var d = new Date(at);
	if (!at || isNaN(d.getTime()))
		return String(at || '?');
	return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
}

function daemonText(st) {
	var names = st ? Object.keys(st.daemons) : [];
	if (!names.length)
		return [ _('no status reported by the daemon') ];
	return names.map(function(n) {
		var d = st.daemons[n] || {};
		return n + ': ' + String(d.state || _('unknown')) +
			(d.atsign ? ' ' + _('as %s').format(d.atsign) : '') +
			(d.device ? ' ' + _('(device %s)').format(d.device) : '') +
			(d.since ? ', ' + _('since %s').format(formatTime(d.since)) : '') +
			(d.sessions != null ? ', ' + _('%d session(s)').format(d.sessions) : '');
	});
}

function lastSessionText(st) {
	var names = st ? Object.keys(st.daemons) : [], out = [];
	names.forEach(function(n) {
		var s = st.daemons[n] && st.daemons[n].last_session;
		if (s && typeof(s) === 'object')
			out.push(n + ': ' + _('%s from %s to %s').format(formatTime(s.at), String(s.from || '?'), String(s.service || '?')));
	});
	return out.length ? out : [ _('none recorded') ];
}

function setLines(root, id, lines) {
	var node = root.querySelector('[id="' + id + '"]');
	if (!node)
		return;
	while (node.firstChild)
		node.removeChild(node.firstChild);
	lines.forEach(function(l, i) {
		if (i)
			node.appendChild(E('br'));
		node.appendChild(document.createTextNode(l));
	});
}

function updateState(root, services, st) {
	setLines(root, 'noports-status', [ _('Service status') + ': ' + instanceStatus(services) ]);
	setLines(root, 'noports-daemon', daemonText(st));
	setLines(root, 'noports-last-session', lastSessionText(st));
	setLines(root, 'noports-enrollment', [ enrollmentText(st) ]);
}

function loadState() {
	return Promise.all([
		L.resolveDefault(callServiceList('sshnpd'), {}),
		fetchEnrollStatus()
	]);
}

return view.extend({
	load: function() {
		return loadState();
	},

	render: function(state) {
		var m, s, o, polling = false;

		m = new form.Map('sshnpd', _('NoPorts'),
			_('The NoPorts daemon (sshnpd) lets the manager atSigns reach services on this device through an atSign-authenticated relay, with no open inbound ports. Enroll the device atSign on the Enrollment tab before enabling it.'));

		s = m.section(form.NamedSection, '_status');
		s.render = function() {
			var row = function(title, id) {
				return E('tr', {}, [ E('td', {}, [ E('strong', {}, [ title ]) ]), E('td', { 'id': id }) ]);
			};
			var el = E('div', { 'class': 'cbi-section', 'id': 'noports-state' }, [
				E('h3', {}, [ _('Status') ]),
				E('table', { 'class': 'noports-state' }, [
					row(_('Service'), 'noports-status'),
					row(_('Daemon'), 'noports-daemon'),
					row(_('Last session'), 'noports-last-session'),
					row(_('Enrollment'), 'noports-enrollment')
				])
			]);
			// Rendered again after every save: show the latest state, poll only once.
			updateState(el, state[0], state[1]);
			if (!polling) {
				polling = true;
				poll.add(function() {
					return loadState().then(function(res) {
						state = res;
						updateState(document, res[0], res[1]);
					});
				}, 5);
			}
			return el;
		};

		s = m.section(form.TypedSection, 'sshnpd', _('Daemon configuration'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = o.disabled;
		o.rmempty = false;

		o = s.option(form.Value, 'atsign', _('Device atSign'),
			_('The atSign of this device, e.g. @my_router. Its keys are read from ~/.atsign/keys/&lt;atSign&gt;_key.atKeys.'));
		o.rmempty = false;
		o.validate = function(section_id, value) {
			return checkAtsign(value);
		};
		o.write = function(section_id, value) {
			return form.Value.prototype.write.call(this, section_id, normalizeAtsign(value));
		};

		o = s.option(form.Value, 'manager', _('Manager atSign(s)'),
			_('The atSign(s) allowed to connect, separated by commas.'));
		o.rmempty = false;
		o.validate = function(section_id, value) {
			var parts = String(value == null ? '' : value).split(','), i, r, dev;
			for (i = 0; i < parts.length; i++) {
				r = checkAtsign(parts[i]);
				if (r !== true)
					return r;
			}
			dev = this.section.formvalue(section_id, 'atsign');
			if (dev && parts.map(normalizeAtsign).indexOf(normalizeAtsign(dev)) >= 0)
				return _('A manager atSign must differ from the device atSign');
			return true;
		};
		o.write = function(section_id, value) {
			var list = String(value).split(',').map(normalizeAtsign).filter(function(v) { return v.length; });
			return form.Value.prototype.write.call(this, section_id, list.join(','));
		};

		o = s.option(form.Value, 'device', _('Device name'),
			_('Lowercase letters, digits, _ and -, starting with a letter, at most 36 characters.'));
		o.rmempty = false;
		o.placeholder = 'openwrt';
		o.validate = function(section_id, value) {
			if (!/^[a-z][a-z0-9_-]{0,35}$/.test(String(value == null ? '' : value)))
				return _('Must start with a lowercase letter and contain only a-z, 0-9, _ and - (at most 36 characters)');
			return true;
		};

		o = s.option(form.Value, 'proxy', _('Proxy'),
			_('Only for networks without direct outbound access: reach the atServer and the relay through an HTTP CONNECT or SOCKS5 proxy, e.g. http://proxy.lan:3128 or socks5h://user:pass@proxy.lan:1080.'));
		o.optional = true;
		o.placeholder = 'http://proxy.lan:3128';
		o.validate = function(section_id, value) {
			var v = String(value == null ? '' : value);
			if (!v.length || /^(http|socks5h?):\/\/([^@\s\/]+@)?(\[[0-9a-fA-F:.]+\]|[^:@\s\/\[\]]+):[0-9]{1,5}\/?$/.test(v))
				return true;
			return _('Expected http://, socks5:// or socks5h:// then [user:pass@]host:port');
		};

		o = s.option(form.Value, 'args', _('Additional arguments'),
			_('Extra sshnpd flags separated by spaces, e.g. "-v --permit-open localhost:22,localhost:80". No quoting; use the list below for a value with spaces.'));
		o.optional = true;

		o = s.option(form.DynamicList, 'arg', _('Additional single arguments'),
			_('Each entry is passed to sshnpd as exactly one argument.'));
		o.optional = true;

		return m.render();
	}
});
