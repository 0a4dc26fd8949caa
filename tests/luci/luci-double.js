// A test double of the LuCI JavaScript runtime (luci-base's luci.js, form.js, uci.js, rpc.js,
// fs.js, ui.js, view), written from their documented contracts, for tests/luci_browser.rs.
//
// It loads a view file the way L.require does ('require x' directives become the arguments of
// a Function built from the source), renders form.Map widgets as real DOM inputs with LuCI's
// ids (widget.cbid.<config>.<section>.<option>), reads them back on save, and answers uci, rpc
// (ubus), fs and poll from a backend the scenario supplies. Every call is recorded in
// LuciDouble.calls. The rpcd ACL of the app is enforced like rpcd does: a ubus object/method,
// a uci config, or a file path with its permission must be granted; fs.exec is allowed when
// the bare executable is granted "exec" or else "<executable> <args joined by spaces>" is.
(function(window) {
'use strict';

var document = window.document;

var D = window.LuciDouble = {
	calls: [],
	backend: null,           // set by the scenario: { uci: {...}, ubus: {...}, exec: fn, read: fn }
	acl: null,               // the parsed acl.d JSON of the app
	pollSpeedup: 10,         // poll intervals run this many times faster than on a router
	t0: Date.now(),
	record: function(fn, args, extra) {
		var c = { fn: fn, args: args.map(function(a) { return a == null ? null : (typeof a == 'object' ? JSON.stringify(a) : String(a)); }), t: Date.now() - D.t0 };
		if (extra)
			for (var k in extra) c[k] = extra[k];
		D.calls.push(c);
		return c;
	}
};

function error(name, msg) {
	var e = new Error(msg);
	e.name = name;
	return e;
}

// ---------------------------------------------------------------- ACL (rpcd semantics)

function globMatch(pattern, s) {
	var re = '^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$';
	return new RegExp(re).test(s);
}

function aclGroups() {
	var groups = [];
	Object.keys(D.acl || {}).forEach(function(name) {
		['read', 'write'].forEach(function(level) {
			if (D.acl[name][level]) groups.push(D.acl[name][level]);
		});
	});
	return groups;
}

function aclFile(path, perm) {
	return aclGroups().some(function(g) {
		return Object.keys(g.file || {}).some(function(p) {
			return globMatch(p, path) && g.file[p].indexOf(perm) >= 0;
		});
	});
}

function aclUbus(object, method) {
	return aclGroups().some(function(g) {
		return (g.ubus && g.ubus[object] || []).some(function(m) { return m == '*' || m == method; });
	});
}

function aclUci(config, write) {
	var name, g;
	for (name in D.acl || {}) {
		g = write ? D.acl[name].write : (D.acl[name].read || D.acl[name].write);
		if (g && (g.uci || []).indexOf(config) >= 0) return true;
		if (!write && D.acl[name].write && (D.acl[name].write.uci || []).indexOf(config) >= 0) return true;
	}
	return false;
}

// ---------------------------------------------------------------- strings, E(), L

String.prototype.format = function() {
	var args = arguments, i = 0;
	return this.replace(/%([%sdh])/g, function(m, c) {
		if (c == '%') return '%';
		var a = args[i++];
		if (c == 'd') return String(parseInt(a, 10));
		if (c == 'h') return String(a).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
		return String(a);
	});
};

function isElem(e) { return e != null && typeof e == 'object' && 'nodeType' in e; }

var dom = {
	elem: isElem,
	append: function(node, children) {
		if (Array.isArray(children)) {
			children.forEach(function(c) {
				if (isElem(c)) node.appendChild(c);
				else if (Array.isArray(c)) dom.append(node, c);
				else if (c != null) node.appendChild(document.createTextNode('' + c));
			});
		}
		else if (isElem(children)) node.appendChild(children);
		else if (children != null) node.innerHTML = '' + children;   // LuCI: a lone string is markup
		return node;
	},
	content: function(node, children) {
		while (node.firstChild) node.removeChild(node.firstChild);
		return dom.append(node, children);
	},
	attr: function(node, key, val) {
		if (val == null) return;
		if (typeof val == 'function') node.addEventListener(key, val);
		else if (typeof val == 'object') node.setAttribute(key, JSON.stringify(val));
		else node.setAttribute(key, val);
	},
	create: function(tag, attr, data) {
		if (Array.isArray(tag)) {
			var frag = document.createDocumentFragment();
			dom.append(frag, tag);
			return frag;
		}
		if (isElem(attr) || Array.isArray(attr) || typeof attr == 'string') { data = attr; attr = null; }
		var node = document.createElement(tag);
		for (var k in (attr || {})) dom.attr(node, k, attr[k]);
		return dom.append(node, data);
	},
	bindClassInstance: function(node, inst) { node.__luciInstance = inst; },
	findClassInstance: function(node) { return node.__luciInstance; },
	callClassMethod: function(node, method) {
		var inst = node.__luciInstance;
		return inst ? inst[method].apply(inst, Array.prototype.slice.call(arguments, 2)) : null;
	}
};

window.E = function() { return dom.create.apply(dom, arguments); };
window._ = function(s) { return s; };
window.N_ = function(n, s, p) { return n == 1 ? s : p; };

var L = window.L = {
	env: { rpctimeout: 20, pollinterval: 5 },
	dom: dom,
	bind: function(fn, self) {
		var args = Array.prototype.slice.call(arguments, 2);
		return function() { return fn.apply(self, args.concat(Array.prototype.slice.call(arguments))); };
	},
	resolveDefault: function(p, def) {
		return Promise.resolve(p).catch(function() { return def; });
	},
	isObject: function(v) { return v != null && typeof v == 'object'; },
	toArray: function(v) { return v == null ? [] : (Array.isArray(v) ? v : [ v ]); },
	raise: function(type, msg) { throw error(type, msg); },
	error: function(type, msg) { throw error(type, msg); },
	url: function() { return '/' + Array.prototype.join.call(arguments, '/'); }
};

function extend(base, proto) {
	var ctor = function() {
		if (this.__init__) return this.__init__.apply(this, arguments);
	};
	ctor.prototype = Object.create(base.prototype);
	for (var k in proto) ctor.prototype[k] = proto[k];
	ctor.prototype.constructor = ctor;
	ctor.prototype.super = function(method, args) {
		return base.prototype[method].apply(this, args || []);
	};
	ctor.extend = function(p) { return extend(ctor, p); };
	ctor.instantiate = function(args) {
		var o = Object.create(ctor.prototype);
		ctor.apply(o, args);
		return o;
	};
	return ctor;
}
var Class = function() {};
Class.extend = function(p) { return extend(Class, p); };
L.Class = Class;

// ---------------------------------------------------------------- uci

var uci = {
	state: {},              // config -> [ section objects ] as committed
	pending: [],            // [ [op, config, sid, option, value] ]
	sections: function(config, type) {
		D.record('uci.sections', [config, type]);
		return (uci.state[config] || []).filter(function(s) { return !type || s['.type'] == type; })
			.map(function(s) { return Object.assign({}, uci._merged(config, s['.name'])); });
	},
	_merged: function(config, sid) {
		var s = (uci.state[config] || []).filter(function(x) { return x['.name'] == sid; })[0];
		if (!s) return null;
		s = Object.assign({}, s);
		uci.pending.forEach(function(p) {
			if (p[1] != config || p[2] != sid) return;
			if (p[0] == 'set') s[p[3]] = p[4];
			else delete s[p[3]];
		});
		return s;
	},
	load: function(config) {
		D.record('uci.load', [config]);
		if (!aclUci(config, false))
			return Promise.reject(error('PermissionError', 'uci: no read access to ' + config));
		if (!uci.state[config])
			return Promise.reject(error('NotFoundError', 'uci: no config ' + config));
		return Promise.resolve([config]);
	},
	get: function(config, sid, option) {
		var s = uci._merged(config, sid);
		if (!s) return null;
		return option == null ? s : (s[option] == null ? null : s[option]);
	},
	get_first: function(config, type, option) {
		var s = (uci.state[config] || []).filter(function(x) { return !type || x['.type'] == type; })[0];
		return s ? uci.get(config, s['.name'], option) : null;
	},
	set: function(config, sid, option, value) {
		D.record('uci.set', [config, sid, option, value]);
		if (!aclUci(config, true)) throw error('PermissionError', 'uci: no write access to ' + config);
		uci.pending.push(['set', config, sid, option, value]);
	},
	unset: function(config, sid, option) {
		D.record('uci.unset', [config, sid, option]);
		if (!aclUci(config, true)) throw error('PermissionError', 'uci: no write access to ' + config);
		uci.pending.push(['unset', config, sid, option]);
	},
	changes: function() { return Promise.resolve(uci.pending.slice()); },
	// Records the net change set it sends (sorted "config.section.option=value" lines, value
	// <deleted> for a deletion), as rpc uci set/delete would carry it after uci.js merged the
	// local changes.
	save: function() {
		var net = {}, lines = [];
		uci.pending.forEach(function(p) {
			net[p[1] + '.' + p[2] + '.' + p[3]] = { p: p, v: p[0] == 'set' ? p[4] : null };
		});
		Object.keys(net).forEach(function(k) {
			var p = net[k].p, v = net[k].v,
			    s = (uci.state[p[1]] || []).filter(function(x) { return x['.name'] == p[2]; })[0],
			    orig = s ? s[p[3]] : undefined;
			if (JSON.stringify(orig === undefined ? null : orig) === JSON.stringify(v)) return;
			lines.push(k + '=' + (v == null ? '<deleted>' : (Array.isArray(v) ? JSON.stringify(v) : v)));
		});
		D.record('uci.save', lines.sort());
		uci.saved = (uci.saved || []).concat(uci.pending);
		uci.pending.forEach(function(p) {
			var s = (uci.state[p[1]] || []).filter(function(x) { return x['.name'] == p[2]; })[0];
			if (!s) return;
			if (p[0] == 'set') s[p[3]] = p[4]; else delete s[p[3]];
		});
		uci.pending = [];
		return Promise.resolve();
	},
	apply: function(rollback) {
		D.record('uci.apply', [rollback]);
		return Promise.resolve();
	}
};

// Parses the text of an /etc/config file (config/option/list lines) into uci.state[name].
D.loadUciConfig = function(name, text, anonNames) {
	var sections = [], cur = null, n = 0, m;
	text.split('\n').forEach(function(line) {
		line = line.replace(/^\s+|\s+$/g, '');
		if (!line.length || line.charAt(0) == '#') return;
		var unq = function(v) { return v == null ? '' : v.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1'); };
		if ((m = /^config\s+(\S+)(?:\s+(\S+))?$/.exec(line))) {
			cur = { '.type': unq(m[1]), '.name': m[2] ? unq(m[2]) : (anonNames[n] || ('cfg' + n)), '.anonymous': !m[2] };
			n++;
			sections.push(cur);
		}
		else if ((m = /^option\s+(\S+)\s*(.*)$/.exec(line)) && cur) {
			cur[m[1]] = unq(m[2]);
		}
		else if ((m = /^list\s+(\S+)\s+(.*)$/.exec(line)) && cur) {
			(cur[m[1]] = cur[m[1]] || []).push(unq(m[2]));
		}
	});
	uci.state[name] = sections;
	return sections;
};

// ---------------------------------------------------------------- rpc, fs

var rpc = {
	declare: function(opts) {
		var params = opts.params || [];
		return function() {
			var args = {}, argv = arguments;
			params.forEach(function(p, i) { if (argv[i] !== undefined) args[p] = argv[i]; });
			D.record('rpc.' + opts.object + '.' + opts.method, [args]);
			if (!aclUbus(opts.object, opts.method))
				return Promise.reject(error('PermissionError', 'ubus ' + opts.object + ' ' + opts.method + ': access denied'));
			var h = D.backend.ubus && D.backend.ubus[opts.object + '.' + opts.method];
			if (!h)
				return Promise.reject(error('NotFoundError', 'ubus ' + opts.object + ' ' + opts.method + ': not found'));
			return Promise.resolve(h(args)).then(function(res) {
				var exp = opts.expect, key, def;
				if (!exp) return res;
				key = Object.keys(exp)[0];
				def = exp[key];
				var v = key === '' ? res : (res != null ? res[key] : null);
				if (def != null && (v == null || typeof v != typeof def || Array.isArray(v) != Array.isArray(def)))
					return def;
				return v;
			});
		};
	}
};

D.aclFile = aclFile;

// rpcd file.c: exec is allowed when the executable itself is granted "exec" (then with any
// arguments), else when "<executable> <arg> <arg>..." is.
D.aclExecAllowed = function(command, argv) {
	return aclFile(command, 'exec') || !!(argv.length && aclFile(command + ' ' + argv.join(' '), 'exec'));
};

var fs = {
	exec: function(command, params, env) {
		var argv = L.toArray(params);
		var c = D.record('fs.exec', [command].concat(argv));
		if (!D.aclExecAllowed(command, argv)) {
			c.denied = true;
			return Promise.reject(error('PermissionError', 'Permission denied'));
		}
		return Promise.resolve(D.backend.exec(command, argv)).then(function(r) {
			c.done = Date.now() - D.t0;
			return r;
		});
	},
	read: function(path) {
		var c = D.record('fs.read', [path]);
		if (!aclFile(path, 'read')) {
			c.denied = true;
			return Promise.reject(error('PermissionError', 'Permission denied'));
		}
		var data = D.backend.read ? D.backend.read(path) : null;
		return data == null ? Promise.reject(error('NotFoundError', 'Not found')) : Promise.resolve(data);
	},
	// rpcd file.c write: the path must be granted "write"; the data is not recorded (it is
	// the passcode), only its length and the mode.
	write: function(path, data, mode) {
		var c = D.record('fs.write', [path, String(String(data).length), String(mode)]);
		if (!aclFile(path, 'write')) {
			c.denied = true;
			return Promise.reject(error('PermissionError', 'Permission denied'));
		}
		if (D.backend.write)
			D.backend.write(path, String(data), mode);
		return Promise.resolve(0);
	},
	stat: function(path) {
		D.record('fs.stat', [path]);
		return Promise.reject(error('PermissionError', 'Permission denied'));
	}
};

// ---------------------------------------------------------------- poll

var poll = {
	queue: [],
	add: function(fn, interval) {
		interval = interval || L.env.pollinterval;
		D.record('poll.add', [interval]);
		var entry = { fn: fn, interval: interval, active: true };
		poll.queue.push(entry);
		var tick = function() {
			if (!entry.active) return;
			Promise.resolve().then(fn).catch(function(e) { D.record('poll.error', [String(e)]); })
				.then(function() { setTimeout(tick, interval * 1000 / D.pollSpeedup); });
		};
		setTimeout(tick, interval * 1000 / D.pollSpeedup);
		return true;
	},
	remove: function(fn) {
		poll.queue.forEach(function(e) { if (e.fn === fn) e.active = false; });
	},
	start: function() {}, stop: function() {}, active: function() { return true; }
};

// ---------------------------------------------------------------- ui

var ui = {
	notifications: [],
	addNotification: function(title, children, cls) {
		D.record('ui.addNotification', [title, cls]);
		var n = E('div', { 'class': 'alert-message ' + (cls || '') }, [ title ? E('h4', {}, title) : '', children ]);
		document.getElementById('tabmenu-messages').appendChild(n);
		return n;
	},
	showModal: function(title, children) {
		D.record('ui.showModal', [title]);
		var m = document.getElementById('modal');
		dom.content(m, [ E('h4', {}, [ title ]), E('div', {}, children) ]);
		m.style.display = 'block';
		return m;
	},
	hideModal: function() { document.getElementById('modal').style.display = 'none'; },
	// ui.js: disables the clicked button while the handler's promise is pending, then enables it.
	createHandlerFn: function(ctx, fn) {
		if (typeof fn == 'string') fn = ctx[fn];
		if (typeof fn != 'function') return null;
		var extra = Array.prototype.slice.call(arguments, 2);
		return function(ev) {
			var t = ev.target, args = Array.prototype.slice.call(arguments);
			t.classList.add('spinning');
			t.disabled = true;
			// (A rejection is left unhandled by LuCI, which only logs it; recorded here.)
			Promise.resolve().then(function() { return fn.apply(ctx, extra.concat(args)); }).catch(function(e) {
				D.record('ui.handlerRejected', [ String(e && e.message || e) ]);
			}).finally(function() {
				t.classList.remove('spinning');
				t.disabled = false;
			});
		};
	},
	changes: {
		apply: function(checked) { return uci.apply(!!checked); }
	}
};

// ---------------------------------------------------------------- form

var form = {};

var CBIMap = Class.extend({
	__init__: function(config, title, description) {
		this.config = config;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.data = uci;
		this.readonly = false;
	},
	section: function(cls) {
		var args = [ this ].concat(Array.prototype.slice.call(arguments, 1));
		var s = cls.instantiate(args);
		this.children.push(s);
		return s;
	},
	load: function() {
		var self = this;
		return this.data.load(this.config).then(function() {
			return Promise.all(self.children.map(function(s) { return s.load(); }));
		});
	},
	parse: function() {
		return Promise.all(this.children.map(function(s) { return s.parse(); }));
	},
	save: function(cb, silent) {
		var self = this;
		return this.parse().then(cb).then(function() { return self.data.save(); })
			.then(function() { return self.load(); })
			.catch(function(e) {
				if (!silent) ui.showModal(_('Save error'), [ E('p', {}, [ _('An error occurred while saving the form:') ]), E('p', {}, [ E('em', { 'style': 'white-space:pre-wrap' }, [ e.message ]) ]) ]);
				return Promise.reject(e);
			}).then(function() { return self.renderContents(); });
	},
	renderContents: function() {
		var self = this;
		if (!this.root) {
			this.root = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + this.config });
			dom.bindClassInstance(this.root, this);
		}
		return Promise.all(this.children.map(function(s) { return s.render(); })).then(function(nodes) {
			dom.content(self.root, [
				self.title ? E('h2', {}, [ self.title ]) : '',
				self.description ? E('div', { 'class': 'cbi-map-descr' }, self.description) : '',
				nodes
			]);
			return self.root;
		});
	},
	render: function() {
		var self = this;
		return this.load().then(function() { return self.renderContents(); });
	}
});

var CBIAbstractSection = Class.extend({
	__init__: function(map, sectionType, title, description) {
		this.map = map;
		this.sectiontype = sectionType;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.anonymous = false;
		this.addremove = false;
	},
	option: function(cls, option, title, description) {
		var o = cls.instantiate([ this.map, this, option, title, description ]);
		this.children.push(o);
		return o;
	},
	tab: function() {},
	taboption: function(tab) { return this.option.apply(this, Array.prototype.slice.call(arguments, 1)); },
	cfgsections: function() { return []; },
	load: function() {
		var self = this;
		this.cfgsections().forEach(function(sid) {
			self.children.forEach(function(o) { o.cfgvalue(sid, o.load(sid)); });
		});
		return Promise.resolve();
	},
	parse: function() {
		var tasks = [], self = this;
		this.cfgsections().forEach(function(sid) {
			self.children.forEach(function(o) { tasks.push(o.parse(sid)); });
		});
		return Promise.all(tasks);
	},
	formvalue: function(sid, option) {
		var rv = {};
		for (var i = 0; i < this.children.length; i++) {
			var v = this.children[i].formvalue(sid);
			if (option && this.children[i].option == option) return v;
			rv[this.children[i].option] = v;
		}
		return option ? null : rv;
	},
	renderSection: function(sid) {
		return E('div', { 'class': 'cbi-section-node', 'id': 'cbi-' + this.map.config + '-' + sid },
			this.children.map(function(o) { return o.render(sid); }));
	},
	render: function() {
		var self = this;
		return E('div', { 'class': 'cbi-section', 'id': 'cbi-' + this.map.config + '-' + this.sectiontype }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : '',
			this.cfgsections().map(function(sid) { return self.renderSection(sid); })
		]);
	}
});

form.TypedSection = CBIAbstractSection.extend({
	cfgsections: function() {
		return uci.sections(this.map.config, this.sectiontype).map(function(s) { return s['.name']; });
	}
});

form.NamedSection = CBIAbstractSection.extend({
	__init__: function(map, sectionId, sectionType, title, description) {
		this.super('__init__', [ map, sectionType, title, description ]);
		this.section = sectionId;
	},
	cfgsections: function() {
		return uci.get(this.map.config, this.section) ? [ this.section ] : [];
	}
});

var CBIAbstractValue = Class.extend({
	__init__: function(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title || '';
		this.description = description || '';
		this.rmempty = true;
		this.optional = false;
		this.default = null;
		this.data = {};
	},
	widgetId: function(sid) { return 'widget.cbid.' + this.map.config + '.' + sid + '.' + this.option; },
	load: function(sid) { return uci.get(this.map.config, sid, this.option); },
	cfgvalue: function(sid, set) {
		if (arguments.length == 2) this.data[sid] = set;
		return this.data[sid];
	},
	validate: function(sid, value) { return true; },
	write: function(sid, value) { return uci.set(this.map.config, sid, this.option, value); },
	remove: function(sid) { return uci.unset(this.map.config, sid, this.option); },
	getInput: function(sid) { return document.getElementById(this.widgetId(sid)); },
	formvalue: function(sid) {
		var el = this.getInput(sid);
		return el ? el.value : null;
	},
	checkValid: function(sid) {
		var v = this.validate(sid, this.formvalue(sid));
		var el = this.getInput(sid), field = el && el.closest('.cbi-value'), msg;
		if (field) {
			msg = field.querySelector('.cbi-value-error');
			if (v === true) {
				el.classList.remove('cbi-input-invalid');
				if (msg) msg.textContent = '';
			}
			else {
				el.classList.add('cbi-input-invalid');
				if (msg) msg.textContent = String(v);
			}
		}
		return v;
	},
	parse: function(sid) {
		var v = this.checkValid(sid);
		if (v !== true)
			return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.').format(this.title || this.option) + ' ' + v));
		var cval = this.cfgvalue(sid), fval = this.formvalue(sid);
		if (fval == null || fval === '' || (Array.isArray(fval) && !fval.length)) {
			if (this.rmempty || this.optional) {
				// uci.js drops the deletion of an option that is not there; an empty one is deleted.
				if (cval == null) return Promise.resolve();
				return Promise.resolve(this.remove(sid));
			}
			return Promise.reject(new TypeError(_('Option "%s" must not be empty.').format(this.title || this.option)));
		}
		if (JSON.stringify(cval) !== JSON.stringify(fval))
			return Promise.resolve(this.write(sid, fval));
		return Promise.resolve();
	},
	renderWidget: function(sid, value) {
		return E('input', { 'id': this.widgetId(sid), 'type': this.password ? 'password' : 'text', 'class': 'cbi-input-text',
			'value': value == null ? '' : value, 'placeholder': this.placeholder });
	},
	render: function(sid) {
		var cval = this.cfgvalue(sid), value = cval != null ? cval : this.default, self = this;
		var widget = this.renderWidget(sid, value);
		var node = E('div', { 'class': 'cbi-value', 'id': 'cbi-' + this.map.config + '-' + sid + '-' + this.option, 'data-name': this.option }, [
			E('label', { 'class': 'cbi-value-title', 'for': this.widgetId(sid) }, this.title),
			E('div', { 'class': 'cbi-value-field' }, [
				E('div', { 'id': 'cbid.' + this.map.config + '.' + sid + '.' + this.option }, [ widget ]),
				E('div', { 'class': 'cbi-value-error' }),
				this.description ? E('div', { 'class': 'cbi-value-description' }, this.description) : ''
			])
		]);
		['input', 'change', 'blur'].forEach(function(ev) {
			widget.addEventListener(ev, function() { self.checkValid(sid); }, true);
		});
		return node;
	}
});
form.AbstractValue = CBIAbstractValue;

form.Value = CBIAbstractValue.extend({});

form.Flag = CBIAbstractValue.extend({
	__init__: function() {
		CBIAbstractValue.prototype.__init__.apply(this, arguments);
		this.enabled = '1';
		this.disabled = '0';
		this.default = this.disabled;
	},
	formvalue: function(sid) {
		var el = this.getInput(sid);
		return el ? (el.checked ? this.enabled : this.disabled) : null;
	},
	renderWidget: function(sid, value) {
		return E('input', { 'id': this.widgetId(sid), 'type': 'checkbox', 'class': 'cbi-input-checkbox',
			'checked': value == this.enabled ? 'checked' : null });
	}
});

form.DynamicList = CBIAbstractValue.extend({
	formvalue: function(sid) {
		var el = document.getElementById(this.widgetId(sid));
		if (!el) return null;
		return Array.prototype.map.call(el.querySelectorAll('.item'), function(i) { return i.getAttribute('data-value'); });
	},
	getInput: function(sid) { return document.getElementById(this.widgetId(sid) + '.add'); },
	renderWidget: function(sid, value) {
		var list = E('div', { 'id': this.widgetId(sid), 'class': 'cbi-dynlist' });
		var item = function(v) {
			var it = E('div', { 'class': 'item', 'data-value': v }, [ E('span', {}, [ v ]), ' ',
				E('button', { 'class': 'cbi-button cbi-button-remove', 'type': 'button', 'click': function() { list.removeChild(it); } }, [ '×' ]) ]);
			return it;
		};
		L.toArray(value).forEach(function(v) { list.appendChild(item(v)); });
		var add = E('input', { 'id': this.widgetId(sid) + '.add', 'type': 'text', 'class': 'cbi-input-text' });
		var btn = E('button', { 'class': 'cbi-button cbi-button-add', 'type': 'button', 'click': function() {
			if (add.value.length) { list.insertBefore(item(add.value), add.parentNode); add.value = ''; }
		} }, [ '+' ]);
		list.appendChild(E('div', { 'class': 'add-item' }, [ add, btn ]));
		return list;
	},
	checkValid: function(sid) { return true; }
});

form.Map = CBIMap;

// ---------------------------------------------------------------- view

var View = Class.extend({
	__init__: function() {},
	load: function() {},
	render: function() {},
	handleSave: function(ev) {
		var tasks = [];
		document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
			tasks.push(dom.callClassMethod(map, 'save'));
		});
		return Promise.all(tasks);
	},
	handleSaveApply: function(ev, mode) {
		return this.handleSave(ev).then(function() { return ui.changes.apply(mode == '0'); });
	},
	handleReset: function(ev) {
		return Promise.resolve();
	},
	addFooter: function() {
		var hasButtons = this.handleSaveApply || this.handleSave || this.handleReset;
		if (!hasButtons) return E([]);
		return E('div', { 'class': 'cbi-page-actions control-group' }, [
			// LuCI's Save & Apply combo button: mode '0' is the checked apply (with rollback).
			this.handleSaveApply ? E('button', { 'class': 'cbi-button cbi-button-apply', 'click': ui.createHandlerFn(this, function(ev) { return this.handleSaveApply(ev, '0'); }) }, [ _('Save & Apply') ]) : '', ' ',
			this.handleSave ? E('button', { 'class': 'cbi-button cbi-button-save', 'click': ui.createHandlerFn(this, 'handleSave') }, [ _('Save') ]) : '', ' ',
			this.handleReset ? E('button', { 'class': 'cbi-button cbi-button-reset', 'click': ui.createHandlerFn(this, 'handleReset') }, [ _('Reset') ]) : ''
		]);
	}
});
var view = { extend: function(proto) { return View.extend(proto); } };

// ---------------------------------------------------------------- module loader

var modules = { view: view, form: form, uci: uci, rpc: rpc, fs: fs, ui: ui, poll: poll, dom: dom, baseclass: Class };
L.ui = ui; L.uci = uci; L.rpc = rpc; L.fs = fs; L.poll = poll; L.form = form; L.view = view;

// Like L.require for a view: the leading 'use strict' / 'require x [as y]' directives name the
// modules, which become the parameters of a Function over the file's source.
D.loadView = function(url) {
	return fetch(url, { cache: 'no-store' }).then(function(r) {
		if (!r.ok) throw error('NetworkError', url + ': HTTP ' + r.status);
		return r.text();
	}).then(function(source) {
		var re = /^(?:\s*|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)*'(use strict|require\s+(\S+)(?:\s+as\s+([a-zA-Z_]\S*))?)';/,
		    rest = source, m, names = [], deps = [];
		while ((m = re.exec(rest)) != null) {
			rest = rest.substring(m[0].length);
			if (!m[2]) continue;
			if (!Object.prototype.hasOwnProperty.call(modules, m[2]))
				throw error('DependencyError', url + ': unknown module ' + m[2]);
			names.push(m[3] || m[2].replace(/[^a-zA-Z0-9_]/g, '_'));
			deps.push(modules[m[2]]);
		}
		var fn = new Function(names.join(','), source + '\n//# sourceURL=' + url);
		var cls = fn.apply(L, deps);
		if (typeof cls != 'function' || !(cls.prototype instanceof View))
			throw error('TypeError', url + ' does not return a view class');
		return cls;
	});
};

// Like view's __init__: load(), render(load result), then the page footer.
D.runView = function(url) {
	return D.loadView(url).then(function(cls) {
		var v = cls.instantiate([]);
		D.view = v;
		var vp = document.getElementById('view');
		return Promise.resolve(v.load()).then(function(data) { return v.render(data); }).then(function(node) {
			dom.content(vp, node);
			vp.appendChild(v.addFooter());
			return v;
		});
	});
};

})(window);
