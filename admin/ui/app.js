// sipedge dashboard: plain JavaScript, no framework, no build step.
//
// It reads the admin API with the bearer token the admin gives it, and one
// Server-Sent Events stream (read with fetch, because EventSource cannot
// send a token). Everything it shows that came from SIP (user agents,
// contacts, URIs, message text) is attacker-controlled: the DOM is built
// with createElement/textContent/setAttribute only, never from HTML text.
'use strict';

(() => {
  const TOKEN_KEY = 'sipedge.token';
  const PEERS_PAGE = 100;
  const PEERS_REFRESH_MS = 5000;
  const TRACE_REFRESH_MS = 2000;
  const RATE_WINDOW_S = 60;
  const HISTORY_KEEP_MS = 120000;

  // ---------------------------------------------------------------- DOM

  const SVGNS = 'http://www.w3.org/2000/svg';

  // add appends children: nodes, strings (as text), arrays; skips null,
  // undefined and false.
  function add(parent, ...kids) {
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      if (Array.isArray(k)) add(parent, ...k);
      else if (k instanceof Node) parent.appendChild(k);
      else parent.appendChild(document.createTextNode(String(k)));
    }
    return parent;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return el;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      else if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return el;
  }

  // h makes an HTML element: h('td', {class: 'num'}, '42').
  function h(tag, attrs, ...kids) {
    return add(setAttrs(document.createElement(tag), attrs), ...kids);
  }

  // s makes an SVG element.
  function s(tag, attrs, ...kids) {
    return add(setAttrs(document.createElementNS(SVGNS, tag), attrs), ...kids);
  }

  const $ = (sel, root = document) => root.querySelector(sel);

  // fill replaces el's children (skipping null, unlike replaceChildren).
  function fill(el, ...kids) {
    el.replaceChildren();
    return add(el, ...kids);
  }

  // ---------------------------------------------------------- formatting

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (n === null || n === undefined || Number.isNaN(n) ? '–' : nf.format(Math.round(n)));

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return '–';
    if (n < 1024) return `${n} B`;
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  // fmtDur is a duration in seconds for people: 42 s, 3 min 05 s, 2 h 10 min, 3 d 4 h.
  function fmtDur(sec) {
    if (!Number.isFinite(sec)) return '–';
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return `${sec} s`;
    const m = Math.floor(sec / 60);
    if (m < 60) return `${m} min ${String(sec % 60).padStart(2, '0')} s`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr} h ${String(m % 60).padStart(2, '0')} min`;
    return `${Math.floor(hr / 24)} d ${hr % 24} h`;
  }

  // fmtAbout is a coarse duration: 42 s, 54 min, 2 h 10 min, 3 d 4 h.
  function fmtAbout(sec) {
    if (!Number.isFinite(sec)) return '–';
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return `${sec} s`;
    if (sec < 3600) return `${Math.floor(sec / 60)} min`;
    return fmtDur(sec);
  }

  // fmtClock is a call duration: 0:42, 12:05, 1:02:03.
  function fmtClock(sec) {
    if (!Number.isFinite(sec)) return '–';
    sec = Math.max(0, Math.floor(sec));
    const hr = Math.floor(sec / 3600);
    const m = Math.floor((sec % 3600) / 60);
    const ss = String(sec % 60).padStart(2, '0');
    return hr > 0 ? `${hr}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  }

  const parseTime = (t) => {
    if (!t || t.startsWith('0001-01-01')) return null;
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? null : ms;
  };

  function fmtAgo(t) {
    const ms = parseTime(t);
    if (ms === null) return '–';
    const d = (Date.now() - ms) / 1000;
    if (d < 0) return `in ${fmtAbout(-d)}`;
    if (d < 5) return 'just now';
    return `${fmtAbout(d)} ago`;
  }

  function fmtTime(t) {
    const ms = parseTime(t);
    if (ms === null) return '–';
    const d = new Date(ms);
    const sameDay = new Date().toDateString() === d.toDateString();
    const time = d.toLocaleTimeString('en-GB', { hour12: false });
    return sameDay ? time : `${d.toISOString().slice(0, 10)} ${time}`;
  }

  function fmtOffset(ms) {
    if (!Number.isFinite(ms)) return '';
    if (ms < 10) return `+${ms.toFixed(1)} ms`;
    if (ms < 1000) return `+${Math.round(ms)} ms`;
    return `+${(ms / 1000).toFixed(3)} s`;
  }

  const fmtPct = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} %` : '–');
  const fmtMs = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : '–');
  const fmtRate = (v) => (v === null || v === undefined ? '–' : `${v < 10 ? v.toFixed(1) : Math.round(v)}/s`);

  // ------------------------------------------------------------ token

  let token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch { token = null; }

  function setToken(t) {
    token = t || null;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage may be off: keep it in memory */ }
    $('#signout').hidden = !token;
  }

  // takeTokenFromURL moves a token given as #token=... (as printed by
  // `sipedge dashboard`) into session storage and out of the address bar
  // and history.
  function takeTokenFromURL() {
    const m = /(?:^#|[&?#/])token=([^&]*)/.exec(location.hash);
    if (!m) return;
    let t = m[1];
    try { t = decodeURIComponent(t); } catch { /* keep it raw */ }
    let rest = location.hash.replace(m[0], '').replace(/^#?[&?]?/, '');
    if (!rest.startsWith('/')) rest = '/';
    history.replaceState(null, '', `${location.pathname}${location.search}#${rest}`);
    if (t) setToken(t.trim());
  }

  // ------------------------------------------------------------ API

  class HTTPError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  let authFailed = null; // set after a 401: the message for the token form

  async function api(path, opts = {}) {
    const used = token;
    if (!used) throw new HTTPError(401, 'no token');
    const res = await fetch(path, {
      method: opts.method || 'GET',
      headers: { Authorization: `Bearer ${used}`, Accept: 'application/json' },
      cache: 'no-store',
      signal: opts.signal,
    });
    if (res.status === 401) {
      unauthorized(used);
      throw new HTTPError(401, 'token refused');
    }
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try { const j = await res.json(); if (j && j.error) msg += `: ${j.error}`; } catch { /* not JSON */ }
      throw new HTTPError(res.status, msg);
    }
    if (res.status === 204) return { data: null, res };
    return { data: await res.json(), res };
  }

  // unauthorized signs out after a 401 to a request made with token used
  // (not one from before the admin gave a new token).
  function unauthorized(used) {
    if (used !== token || !token) return;
    authFailed = 'sipedge refused the token (HTTP 401). It may be mistyped, or sipedge was set up with a new one.';
    setToken(null);
    stream.stop();
    route();
  }

  // ------------------------------------------------------------ event stream

  // stream holds one fetch-based SSE connection and the latest of each
  // kind of event; views subscribe to the kinds they show.
  const stream = {
    calls: null,
    status: null,
    recent: null,
    subs: new Set(),
    ctrl: null,
    running: false,
    state: 'off',
    // history[callID] = [{t, streams: [[pk0, pk1], ...]}], for packet rates.
    history: new Map(),

    subscribe(fn) { this.subs.add(fn); return () => this.subs.delete(fn); },

    emit(kind) {
      for (const fn of [...this.subs]) {
        try { fn(kind); } catch (e) { console.error('view update failed:', e); }
      }
    },

    setState(st) {
      this.state = st;
      const el = $('#conn');
      el.dataset.state = st;
      $('.label', el).textContent = { live: 'live', connecting: 'connecting…', retry: 'reconnecting…', off: 'offline' }[st] || st;
      el.title = st === 'live' ? 'Receiving live updates from sipedge' : 'Not receiving live updates';
    },

    gen: 0,

    start() {
      if (this.running || !token) return;
      this.running = true;
      this.gen++;
      this.loop(this.gen);
    },

    stop() {
      this.running = false;
      this.gen++;
      if (this.ctrl) this.ctrl.abort();
      this.setState('off');
    },

    // loop runs one connection at a time until stop(); a loop whose
    // generation is over (stop, then start again) ends at its next turn.
    async loop(gen) {
      let backoff = 1000;
      const mine = () => this.running && this.gen === gen && token;
      while (mine()) {
        this.setState(this.state === 'live' || this.state === 'retry' ? 'retry' : 'connecting');
        const ctrl = new AbortController();
        this.ctrl = ctrl;
        let watchdog = null;
        const kick = () => {
          clearTimeout(watchdog);
          // calls come every second: silence for 12 s means a dead stream.
          watchdog = setTimeout(() => ctrl.abort(), 12000);
        };
        try {
          kick();
          const used = token;
          const res = await fetch('/api/v1/events', {
            headers: { Authorization: `Bearer ${used}`, Accept: 'text/event-stream' },
            cache: 'no-store',
            signal: ctrl.signal,
          });
          if (res.status === 401) {
            unauthorized(used); // stops this loop, unless the token changed since
            throw new Error('HTTP 401');
          }
          if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
          if (!mine()) break;
          const reader = res.body.getReader();
          const dec = new TextDecoder();
          let buf = '';
          let first = true;
          for (;;) {
            const { value, done } = await reader.read();
            if (done || !mine()) break;
            kick();
            buf += dec.decode(value, { stream: true });
            // Normalise line ends, keeping a trailing \r that may be half of \r\n.
            const keepCR = buf.endsWith('\r');
            buf = buf.replace(/\r\n?/g, '\n');
            if (keepCR) buf = `${buf.slice(0, -1)}\r`;
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              this.dispatch(block);
              if (first) { first = false; this.setState('live'); backoff = 1000; }
            }
            if (buf.length > 8 << 20) throw new Error('event too large');
          }
        } catch (e) {
          if (!mine()) break;
        } finally {
          clearTimeout(watchdog);
        }
        if (!mine()) break;
        this.setState('retry');
        await sleep(backoff + Math.random() * 500);
        backoff = Math.min(backoff * 2, 30000);
      }
    },

    dispatch(block) {
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
      }
      if (!data.length) return;
      let v;
      try { v = JSON.parse(data.join('\n')); } catch (e) { console.warn('bad event data', event, e); return; }
      if (event === 'calls') { this.calls = v || []; this.record(this.calls); }
      else if (event === 'status') this.status = v;
      else if (event === 'recent') this.recent = v || [];
      else return;
      this.emit(event);
    },

    // record keeps each live call's packet counters over time.
    record(calls) {
      const now = Date.now();
      for (const c of calls) {
        let hist = this.history.get(c.call_id);
        if (!hist) { hist = []; this.history.set(c.call_id, hist); }
        hist.push({ t: now, streams: (c.streams || []).map((st) => [st.legs[0].packets, st.legs[1].packets]) });
        while (hist.length > 2 && now - hist[0].t > HISTORY_KEEP_MS) hist.shift();
      }
      for (const [id, hist] of this.history) {
        if (now - hist[hist.length - 1].t > HISTORY_KEEP_MS) this.history.delete(id);
      }
    },

    // rate is the packets/s of a call's stream and direction between its
    // last two samples; null before there are two.
    rate(id, si, dir) {
      const hist = this.history.get(id);
      if (!hist || hist.length < 2) return null;
      const a = hist[hist.length - 2];
      const b = hist[hist.length - 1];
      const dt = (b.t - a.t) / 1000;
      if (dt <= 0 || !a.streams[si] || !b.streams[si]) return null;
      return Math.max(0, (b.streams[si][dir] - a.streams[si][dir]) / dt);
    },

    // series is [t, packets/s] for one direction over the last window.
    series(id, si, dir) {
      const hist = this.history.get(id) || [];
      const out = [];
      for (let i = 1; i < hist.length; i++) {
        const a = hist[i - 1];
        const b = hist[i];
        const dt = (b.t - a.t) / 1000;
        if (dt <= 0 || !a.streams[si] || !b.streams[si]) continue;
        out.push([b.t, Math.max(0, (b.streams[si][dir] - a.streams[si][dir]) / dt)]);
      }
      return out;
    },
  };

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ------------------------------------------------------------ widgets

  function badge(cls, text, title) {
    return h('span', { class: `badge ${cls}`, title }, text);
  }

  function natBadge(nat, title) {
    return nat ? badge('nat', 'NAT', title) : badge('nonat', 'no NAT', title);
  }

  const stateLabels = { ringing: 'ringing', answered: 'answered', ended: 'ended', failed: 'failed', cancelled: 'cancelled' };
  function stateBadge(state) {
    return badge(`state state-${stateLabels[state] ? state : 'other'}`, state || '?');
  }

  function card(title, body, opts = {}) {
    return h('section', { class: ['card', opts.class], dataset: opts.dataset },
      title ? h('h2', null, title, opts.extra || null) : null,
      body);
  }

  function kv(rows) {
    const dl = h('dl', { class: 'kv' });
    for (const [k, v] of rows) {
      if (v === null || v === undefined) continue;
      add(dl, h('dt', null, k), h('dd', null, v));
    }
    return dl;
  }

  const mono = (t, title) => h('span', { class: 'mono', title }, t);

  function notice(kind, ...kids) {
    return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null }, ...kids);
  }

  function emptyRow(cols, text) {
    return h('tr', { class: 'empty' }, h('td', { colspan: cols }, text));
  }

  // sparkline draws RTT history (oldest first; -1 = unanswered) as SVG.
  function sparkline(hist) {
    const W = 112;
    const H = 24;
    const pad = 2;
    const pts = (hist || []).slice(-40);
    const svg = s('svg', {
      class: 'spark', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'data-points': pts.length, 'data-misses': pts.filter((v) => v < 0).length,
    });
    const answered = pts.filter((v) => v >= 0);
    const label = pts.length
      ? `RTT of the last ${pts.length} pings, oldest first: ${pts.map((v) => (v < 0 ? 'no answer' : `${Math.round(v)} ms`)).join(', ')}`
      : 'no pings yet';
    add(svg, s('title', null, label));
    if (!pts.length) {
      add(svg, s('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: 'spark-base' }));
      return svg;
    }
    const max = Math.max(1, ...answered);
    const step = pts.length > 1 ? (W - 2 * pad) / (pts.length - 1) : 0;
    const x = (i) => (pts.length > 1 ? pad + i * step : W / 2);
    const y = (v) => H - pad - (v / max) * (H - 2 * pad - 3);
    add(svg, s('line', { x1: pad, y1: H - pad + 0.5, x2: W - pad, y2: H - pad + 0.5, class: 'spark-base' }));
    let seg = [];
    const flush = () => {
      if (seg.length > 1) add(svg, s('polyline', { points: seg.join(' '), class: 'spark-line' }));
      else if (seg.length === 1) {
        const [px, py] = seg[0].split(',');
        add(svg, s('circle', { cx: px, cy: py, r: 1.6, class: 'spark-dot' }));
      }
      seg = [];
    };
    pts.forEach((v, i) => {
      if (v < 0) {
        flush();
        add(svg, s('rect', { x: x(i) - 1.5, y: pad, width: 3, height: H - 2 * pad, class: 'spark-miss' }));
      } else {
        seg.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      }
    });
    flush();
    return svg;
  }

  // rateChart draws packets/s over the last RATE_WINDOW_S seconds.
  function rateChart(series, dirLabel) {
    const W = 220;
    const H = 40;
    const now = Date.now();
    // The last minute, or less while the call is younger: the chart fills
    // from the start.
    const first = series.length ? series[0][0] : now;
    const span = Math.min(RATE_WINDOW_S * 1000, Math.max(10000, now - first + 1000));
    const t0 = now - span;
    const pts = series.filter(([t]) => t >= t0);
    const max = Math.max(10, ...pts.map(([, v]) => v));
    const svg = s('svg', { class: 'ratechart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-samples': pts.length });
    add(svg, s('title', null, `${dirLabel}: packets per second over the last ${Math.round(span / 1000)} s (peak ${Math.round(max)}/s)`));
    add(svg, s('line', { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: 'chart-base' }));
    add(svg, s('line', { x1: 0, y1: 4.5, x2: W, y2: 4.5, class: 'chart-grid' }));
    add(svg, s('text', { x: 2, y: 12, class: 'chart-label' }, `${Math.round(max)}/s`));
    if (pts.length) {
      const x = (t) => ((t - t0) / span) * W;
      const y = (v) => H - 1 - (v / max) * (H - 6);
      const line = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
      if (pts.length === 1) line.unshift(`${Math.max(0, x(pts[0][0]) - 4).toFixed(1)},${y(pts[0][1]).toFixed(1)}`);
      const area = [`${line[0].split(',')[0]},${H}`, ...line, `${line[line.length - 1].split(',')[0]},${H}`];
      add(svg, s('polygon', { points: area.join(' '), class: 'chart-area' }));
      add(svg, s('polyline', { points: line.join(' '), class: 'chart-line' }));
    } else {
      add(svg, s('text', { x: W / 2, y: H / 2 + 4, class: 'chart-empty', 'text-anchor': 'middle' }, 'collecting…'));
    }
    return svg;
  }

  // ------------------------------------------------------------ views

  // A view is {title, mount(el), unmount()}; route() swaps them.
  let current = null;

  const views = {
    overview: overviewView,
    peers: peersView,
    calls: callsView,
    call: callView,
  };

  function route() {
    if (current && current.unmount) current.unmount();
    window.scrollTo(0, 0);
    current = null;
    const app = $('#app');
    fill(app);
    const hash = location.hash || '#/';
    let name = 'overview';
    let arg = '';
    if (hash.startsWith('#/peers')) name = 'peers';
    else if (hash.startsWith('#/calls')) name = 'calls';
    else if (hash.startsWith('#/call/')) {
      name = 'call';
      try { arg = decodeURIComponent(hash.slice('#/call/'.length)); } catch { arg = hash.slice('#/call/'.length); }
    }
    for (const a of document.querySelectorAll('#nav a')) {
      const on = a.dataset.view === name || (name === 'call' && a.dataset.view === 'calls');
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.body.dataset.view = token ? name : 'login';
    if (!token) {
      document.title = 'sipedge – sign in';
      tokenForm(app);
      return;
    }
    stream.start();
    current = views[name](arg);
    document.title = `sipedge – ${current.title}`;
    current.mount(app);
  }

  // tokenForm asks for the admin token.
  function tokenForm(app) {
    const input = h('input', {
      type: 'password', id: 'token-input', name: 'token', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'admin token', required: true, 'aria-describedby': 'token-help',
    });
    const err = h('p', { class: 'form-error', id: 'token-error', role: 'alert' });
    if (authFailed) err.textContent = authFailed;
    else err.hidden = true;
    const button = h('button', { type: 'submit', class: 'primary' }, 'Open dashboard');
    const form = h('form', { class: 'token-form', id: 'token-form', autocomplete: 'off' },
      h('h1', null, 'Sign in to sipedge'),
      h('p', { id: 'token-help' },
        'Paste the admin token from ', h('code', null, 'DATA_DIR/admin.token'),
        ', or run ', h('code', null, 'sipedge dashboard'), ' on the server and open the link it prints.'),
      h('label', { for: 'token-input' }, 'Token'),
      h('div', { class: 'row' }, input, button),
      err);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      button.disabled = true;
      err.hidden = true;
      try {
        const res = await fetch('/api/v1/status', { headers: { Authorization: `Bearer ${t}` }, cache: 'no-store' });
        if (res.status === 401) {
          err.textContent = 'That token was refused (HTTP 401). Check DATA_DIR/admin.token on the server.';
          err.hidden = false;
          input.select();
          return;
        }
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        authFailed = null;
        setToken(t);
        route();
      } catch (e) {
        err.textContent = `Cannot reach sipedge: ${e.message}`;
        err.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    add(app, h('div', { class: 'login' }, form));
    setTimeout(() => input.focus(), 0);
  }

  // ---- overview

  function overviewView() {
    let root;
    let body;
    let unsub;
    let timer;
    let status = stream.status;
    let countersOpen = false;

    function render() {
      if (!status) return;
      const st = status;
      const regs = st.registrations || 0;
      const nated = st.nated || 0;
      const pct = regs ? Math.round((nated * 100) / regs) : 0;
      const liveCalls = stream.calls ? stream.calls.length : null;

      const ext = st.external;
      const extBody = ext
        ? kv([
          ['Address', mono(ext.address)],
          ['Learned by', h('span', null, badge('src', ext.source || '?'), ' ', ext.detail || '')],
          ['Learned', h('span', { title: fmtTime(ext.learned) }, fmtAgo(ext.learned))],
          ['Changes', fmtInt(ext.changes || 0)],
        ])
        : h('p', { class: 'muted' }, 'None: sipedge is not behind NAT, or has not learned its public address (external_address).');

      const maps = st.port_mappings || [];
      const mapBody = maps.length
        ? h('table', { class: 'grid compact' },
          h('thead', null, h('tr', null, h('th', null, 'Via'), h('th', null, 'Transport'), h('th', null, 'Internal'), h('th', null, 'External'), h('th', { class: 'num' }, 'Renews'))),
          h('tbody', null, maps.map((m) => h('tr', null,
            h('td', null, badge('src', m.protocol)), h('td', null, m.transport),
            h('td', null, mono(m.internal)), h('td', null, mono(m.external)),
            h('td', { class: 'num' }, m.expires ? fmtAgo(m.expires) : '–')))))
        : h('p', { class: 'muted' }, 'No port mappings held on a router.');

      const tx = Object.entries(st.transactions || {}).sort(([a], [b]) => a.localeCompare(b));
      const counters = Object.entries(st.counters || {}).sort(([a], [b]) => a.localeCompare(b));

      fill(body,
        h('div', { class: 'stats' },
          stat('Registrations', fmtInt(regs), `${fmtInt(regs)} registrations, ${fmtInt(nated)} behind NAT (${pct} %)`, 'regs', '#/peers'),
          stat('Behind NAT', `${pct} %`, `${fmtInt(nated)} of ${fmtInt(regs)}`, 'nat', '#/peers'),
          stat('Live calls', liveCalls === null ? '–' : fmtInt(liveCalls), 'from the event stream', 'calls', '#/calls'),
          stat('Uptime', fmtDur(st.uptime_seconds), `since ${fmtTime(st.started)}`, 'uptime'),
          stat('Heap', fmtBytes(st.heap_bytes), 'Go heap in use', 'heap')),
        h('div', { class: 'cards' },
          card('Registrations', h('div', null,
            h('p', { class: 'lead', id: 'nat-share' }, `${fmtInt(regs)} registrations, ${fmtInt(nated)} behind NAT (${pct} %)`),
            h('div', { class: 'meter', role: 'img', 'aria-label': `${pct} % behind NAT` }, meterFill(pct)),
            kv([['AORs', fmtInt(st.aors)], ['Domains', (st.domains || []).length ? (st.domains || []).map((d) => mono(d)).reduce((acc, n) => (acc.length ? [...acc, ', ', n] : [n]), []) : '–']]))),
          card('Listeners', (st.listeners || []).length
            ? h('ul', { class: 'plain' }, (st.listeners || []).map((l) => h('li', null, mono(l))))
            : h('p', { class: 'muted' }, 'No listeners.')),
          card('External address', extBody),
          card('Port mappings', mapBody, { class: maps.length ? 'wide' : '' }),
          card('Transactions', tx.length
            ? h('table', { class: 'grid compact' }, h('tbody', null, tx.map(([k, v]) => h('tr', null, h('td', null, k), h('td', { class: 'num' }, fmtInt(v))))))
            : h('p', { class: 'muted' }, 'None in progress.')),
          counters.length ? card('Counters', h('details', { open: countersOpen, ontoggle: (ev) => { countersOpen = ev.target.open; } },
            h('summary', null, `${counters.length} counters`),
            h('table', { class: 'grid compact' }, h('tbody', null, counters.map(([k, v]) => h('tr', null, h('td', { class: 'mono' }, k), h('td', { class: 'num' }, fmtInt(v)))))))) : null));
    }

    function meterFill(pct) {
      const f = h('span', { class: 'fill' });
      f.style.width = `${Math.min(100, Math.max(0, pct))}%`;
      return f;
    }

    function stat(label, value, sub, key, href) {
      const inner = [h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value', 'data-stat': key }, value), h('div', { class: 'stat-sub' }, sub)];
      return href ? h('a', { class: 'stat', href }, inner) : h('div', { class: 'stat' }, inner);
    }

    async function load() {
      try {
        const { data } = await api('/api/v1/status');
        status = data;
        render();
      } catch (e) {
        if (e.status !== 401 && !status) fill(body, notice('error', `Cannot load the status: ${e.message}`));
      }
    }

    return {
      title: 'overview',
      mount(app) {
        body = h('div', { class: 'overview' }, h('p', { class: 'muted' }, 'Loading…'));
        root = h('div', { class: 'view' }, h('div', { class: 'view-head' }, h('h1', null, 'Overview')), body);
        add(app, root);
        render();
        load();
        unsub = stream.subscribe((kind) => {
          if (kind === 'status') { status = stream.status; render(); }
          else if (kind === 'calls' && status) {
            const el = $('[data-stat="calls"]', body);
            if (el) el.textContent = fmtInt(stream.calls.length);
          }
        });
        timer = setInterval(() => { if (stream.state !== 'live') load(); }, 10000);
      },
      unmount() { unsub(); clearInterval(timer); },
    };
  }

  // ---- peers

  // The peers filter survives view changes and refreshes.
  const peerFilter = { q: '', nat: '', status: '', offset: 0 };

  function peersView() {
    let tbody;
    let info;
    let prev;
    let next;
    let errBox;
    let timer;
    let debounce;
    let ctrl;
    let lastBody = '';
    let total = 0;

    function keepaliveCell(p) {
      const ka = p.keepalive;
      let st = ka ? (ka.status || '').toLowerCase() : '';
      if (!st && p.status) st = p.status.split(/[\s(]/)[0].toLowerCase();
      const td = h('td', { class: 'ka' });
      if (!st) {
        add(td, h('span', { class: 'muted' }, 'no keepalive'));
        return td;
      }
      const label = st.toUpperCase();
      const title = ka
        ? `${ka.method || ''} ping every ${ka.interval_s || '?'} s; ${ka.answered}/${ka.sent} answered; ` +
          `RTT last ${fmtMs(ka.rtt_ms)}, min ${fmtMs(ka.min_rtt_ms)}, avg ${fmtMs(ka.avg_rtt_ms)}` +
          (ka.misses ? `; ${ka.misses} missed in a row` : '') + (ka.dialogs ? `; held open by ${ka.dialogs} call(s)` : '')
        : p.status;
      const top = h('div', { class: 'ka-top' }, badge(`ka ka-${st}`, label, title));
      if (ka && ka.rtt_ms > 0 && (st === 'ok' || st === 'lagged')) add(top, h('span', { class: 'rtt' }, fmtMs(ka.rtt_ms)));
      else if (ka && ka.misses) add(top, h('span', { class: 'rtt bad' }, `${ka.misses} missed`));
      add(td, top);
      if (ka && ka.history_ms) add(td, sparkline(ka.history_ms));
      return td;
    }

    function row(p) {
      const trunk = p.kind === 'trunk';
      const reasons = p.nat_reasons || [];
      // The server's sentence (nat_explain) says what the reasons mean;
      // the reason codes stay in the tooltip.
      const why = p.nat_explain || reasons.join('; ');
      const tip = reasons.length ? `${why} (${reasons.join(', ')})` : why;
      const natCell = h('td', { class: 'nat', 'data-nat-kind': p.nat_kind || null });
      if (trunk) add(natCell, badge('trunk', 'trunk', 'A trunk (route with keepalive)'), p.nat ? [' ', natBadge(true, tip)] : null);
      else add(natCell, natBadge(p.nat, p.nat ? tip : 'Contact and Via match the address the packets come from'));
      if (p.nat && why) add(natCell, h('div', { class: 'reasons' }, why));
      const exp = trunk ? '–' : (p.expires_in > 0 ? fmtAbout(p.expires_in) : 'expired');
      return h('tr', { 'data-aor': p.aor, 'data-kind': p.kind, 'data-nat': p.nat ? 'yes' : 'no' },
        h('td', { class: 'aor' }, h('div', { class: 'strong' }, p.aor), p.user && !p.aor.startsWith(`${p.user}@`) ? h('div', { class: 'sub' }, p.user) : null),
        h('td', { class: 'contact' }, mono(p.contact, p.contact)),
        h('td', { class: 'observed' },
          h('div', null, h('span', { class: 'transport' }, (p.transport || '').toUpperCase()), ' ', mono(p.remote)),
          p.local ? h('div', { class: 'sub' }, 'on ', mono(p.local)) : null),
        natCell,
        keepaliveCell(p),
        h('td', { class: 'num expires', title: p.expires ? fmtTime(p.expires) : null }, exp),
        h('td', { class: 'ua' }, h('span', { title: p.user_agent }, p.user_agent || '–')));
    }

    async function load() {
      if (ctrl) ctrl.abort();
      ctrl = new AbortController();
      const qs = new URLSearchParams({ limit: String(PEERS_PAGE), offset: String(peerFilter.offset) });
      if (peerFilter.q) qs.set('q', peerFilter.q);
      if (peerFilter.nat) qs.set('nat', peerFilter.nat);
      if (peerFilter.status) qs.set('status', peerFilter.status);
      try {
        const { data, res } = await api(`/api/v1/peers?${qs}`, { signal: ctrl.signal });
        total = Number(res.headers.get('X-Total-Count') || (data || []).length);
        if (peerFilter.offset > 0 && peerFilter.offset >= total) {
          peerFilter.offset = Math.max(0, Math.floor((total - 1) / PEERS_PAGE) * PEERS_PAGE);
          return load();
        }
        fill(errBox);
        const text = JSON.stringify(data);
        if (text !== lastBody) {
          lastBody = text;
          const rows = (data || []).map(row);
          const filtered = peerFilter.q || peerFilter.nat || peerFilter.status;
          fill(tbody, ...(rows.length ? rows : [emptyRow(7, filtered ? 'No peers match the filter.' : 'No registrations yet.')]));
        }
        const n = (data || []).length;
        info.textContent = total ? `${fmtInt(peerFilter.offset + 1)}–${fmtInt(peerFilter.offset + n)} of ${fmtInt(total)}` : '0 peers';
        prev.disabled = peerFilter.offset === 0;
        next.disabled = peerFilter.offset + n >= total;
      } catch (e) {
        if (e.name === 'AbortError' || e.status === 401) return;
        fill(errBox, notice('error', `Cannot load the peers: ${e.message}`));
      }
    }

    function refilter() {
      peerFilter.offset = 0;
      lastBody = '';
      load();
    }

    return {
      title: 'peers',
      mount(app) {
        const q = h('input', { type: 'search', id: 'peer-q', placeholder: 'Search AOR, contact, address, user agent', value: peerFilter.q, 'aria-label': 'Search peers' });
        q.value = peerFilter.q;
        q.addEventListener('input', () => {
          clearTimeout(debounce);
          debounce = setTimeout(() => { peerFilter.q = q.value.trim(); refilter(); }, 250);
        });
        const sel = (id, label, opts, key) => {
          const el = h('select', { id, 'aria-label': label }, opts.map(([v, t]) => h('option', { value: v }, t)));
          el.value = peerFilter[key];
          el.addEventListener('change', () => { peerFilter[key] = el.value; refilter(); });
          return el;
        };
        const natSel = sel('peer-nat', 'NAT', [['', 'NAT: any'], ['yes', 'Behind NAT'], ['no', 'Not behind NAT']], 'nat');
        const stSel = sel('peer-status', 'Keepalive status', [['', 'Keepalive: any'], ['ok', 'OK'], ['lagged', 'Lagged'], ['unreachable', 'Unreachable'], ['unknown', 'Unknown'], ['unmonitored', 'Unmonitored'], ['none', 'No keepalive']], 'status');
        info = h('span', { class: 'page-info', id: 'peer-count' }, '');
        prev = h('button', { type: 'button', class: 'btn', id: 'peer-prev', onclick: () => { peerFilter.offset = Math.max(0, peerFilter.offset - PEERS_PAGE); lastBody = ''; load(); } }, '‹ Prev');
        next = h('button', { type: 'button', class: 'btn', id: 'peer-next', onclick: () => { peerFilter.offset += PEERS_PAGE; lastBody = ''; load(); } }, 'Next ›');
        errBox = h('div');
        tbody = h('tbody', null, emptyRow(7, 'Loading…'));
        add(app, h('div', { class: 'view' },
          h('div', { class: 'view-head' }, h('h1', null, 'Peers'),
            h('div', { class: 'toolbar' }, q, natSel, stSel, h('div', { class: 'pager' }, info, prev, next))),
          errBox,
          h('div', { class: 'table-wrap card flush' },
            h('table', { class: 'grid peers', id: 'peers' },
              h('thead', null, h('tr', null,
                h('th', null, 'AOR'), h('th', null, 'Contact (as sent)'), h('th', null, 'Observed'),
                h('th', null, 'NAT'), h('th', null, 'Keepalive'), h('th', { class: 'num' }, 'Expires in'), h('th', null, 'User agent'))),
              tbody))));
        load();
        timer = setInterval(load, PEERS_REFRESH_MS);
      },
      unmount() { clearInterval(timer); clearTimeout(debounce); if (ctrl) ctrl.abort(); },
    };
  }

  // ---- calls

  function callDuration(c) {
    const start = parseTime(c.answered) || parseTime(c.started);
    const end = parseTime(c.ended) || Date.now();
    return start === null ? NaN : (end - start) / 1000;
  }

  const dirNames = ['caller → callee', 'callee → caller'];
  const dirKeys = ['caller-callee', 'callee-caller'];

  function mediaLine(c) {
    return h('div', { class: 'media' },
      c.relayed ? badge('relay', 'relayed', 'Media goes through the sipedge relay') : badge('direct', 'direct', 'Media goes between the phones'),
      ' ', h('span', { class: 'decision' }, c.media_decision || ''));
  }

  function alarms(c) {
    const list = c.alarms || [];
    if (!list.length) return null;
    return h('div', { class: 'alarm', role: 'alert' },
      h('span', { class: 'alarm-icon', 'aria-hidden': 'true' }, '⚠'),
      h('div', null, h('strong', null, list.length === 1 ? 'Alarm: ' : `${list.length} alarms: `),
        list.length === 1 ? list[0] : h('ul', null, list.map((a) => h('li', null, a)))));
  }

  function liveCallCard(c) {
    const dur = callDuration(c);
    const rows = [];
    (c.streams || []).forEach((st, si) => {
      [0, 1].forEach((d) => {
        const leg = st.legs[d];
        rows.push(h('tr', { 'data-stream': si, 'data-dir': dirKeys[d] },
          d === 0
            ? h('td', { class: 'stream-name' }, `${st.media || 'stream'} #${st.index}`,
              st.alarm ? h('div', { class: 'sub warn', title: st.alarm }, '⚠ alarm') : null)
            : h('td', { class: 'stream-name' }),
          h('td', { class: 'dir' }, dirNames[d]),
          h('td', { class: 'num packets' }, fmtInt(leg.packets)),
          h('td', { class: 'num' }, fmtBytes(leg.bytes)),
          h('td', { class: 'num rate' }, fmtRate(stream.rate(c.call_id, si, d))),
          h('td', { class: ['num', leg.loss_percent >= 5 ? 'bad' : ''] }, fmtPct(leg.loss_percent)),
          h('td', { class: 'num' }, fmtMs(leg.jitter_ms))));
      });
    });
    return h('article', { class: 'card call', 'data-call-id': c.call_id },
      h('div', { class: 'call-head' },
        h('a', { class: 'call-parties', href: `#/call/${encodeURIComponent(c.call_id)}` },
          h('span', { class: 'party' }, c.from || '?'), h('span', { class: 'arrow', 'aria-label': 'to' }, ' → '), h('span', { class: 'party' }, c.to || '?')),
        stateBadge(c.state),
        h('span', { class: 'dur num', title: c.state === 'answered' ? 'talk time' : 'ringing for' }, fmtClock(dur)),
        h('div', { class: 'spacer' }),
        h('a', { class: 'btn small', href: `#/call/${encodeURIComponent(c.call_id)}` }, 'Details & ladder')),
      h('div', { class: 'call-meta' },
        h('span', null, 'Caller ', natBadge(c.caller.nat), ' ', mono(c.caller.flow)),
        h('span', null, 'Callee ', natBadge(c.callee.nat), ' ', mono(c.callee.flow)),
        mediaLine(c)),
      alarms(c),
      rows.length
        ? tableWrap(h('table', { class: 'grid compact streams' },
          h('thead', null, h('tr', null, h('th', null, 'Stream'), h('th', null, 'Direction'), h('th', { class: 'num' }, 'Packets'), h('th', { class: 'num' }, 'Bytes'), h('th', { class: 'num' }, 'Rate'), h('th', { class: 'num' }, 'Loss'), h('th', { class: 'num' }, 'Jitter'))),
          h('tbody', null, rows)))
        : h('p', { class: 'muted small' }, c.relayed ? 'No media streams yet.' : 'Media is not relayed: no counters.'));
  }

  function tableWrap(table) {
    return h('div', { class: 'table-wrap' }, table);
  }

  function recentTable(list) {
    const rows = (list || []).map((r) => {
      const dur = r.answered ? callDuration(r) : NaN;
      return h('tr', { 'data-call-id': r.call_id, 'data-state': r.state },
        h('td', { class: 'time' }, h('span', { title: r.started }, fmtTime(r.started))),
        h('td', null, h('a', { href: `#/call/${encodeURIComponent(r.call_id)}`, class: 'strong' }, r.from || '?')),
        h('td', null, r.to || '?'),
        h('td', null, stateBadge(r.state), r.status ? h('span', { class: 'status-code' }, ` ${r.status}`) : null),
        h('td', { class: 'num' }, Number.isFinite(dur) ? fmtClock(dur) : '–'),
        h('td', { class: 'num' }, fmtInt(r.message_count), r.dropped ? h('span', { class: 'sub warn', title: 'messages not kept' }, ` (+${r.dropped})`) : null),
        h('td', { class: 'num' }, fmtBytes(r.bytes)),
        h('td', { class: 'mono callid', title: r.call_id }, r.call_id));
    });
    return h('table', { class: 'grid recent', id: 'recent' },
      h('thead', null, h('tr', null, h('th', null, 'Started'), h('th', null, 'From'), h('th', null, 'To'), h('th', null, 'State'),
        h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Messages'), h('th', { class: 'num' }, 'SIP bytes'), h('th', null, 'Call-ID'))),
      h('tbody', null, rows.length ? rows : emptyRow(8, 'No recent calls.')));
  }

  function callsView() {
    let liveBox;
    let recentBox;
    let unsub;
    let timer;
    let calls = stream.calls;
    let recent = stream.recent;

    function renderLive() {
      if (!calls) return;
      fill(liveBox, ...(calls.length ? calls.map(liveCallCard) : [h('p', { class: 'empty-state' }, 'No calls right now.')]));
    }
    function renderRecent() {
      if (!recent) return;
      fill(recentBox, recentTable(recent));
    }
    async function load() {
      try {
        const [a, b] = await Promise.all([api('/api/v1/calls'), api('/api/v1/calls/recent')]);
        if (!stream.calls) { calls = a.data; renderLive(); }
        if (!stream.recent) { recent = b.data; renderRecent(); }
      } catch (e) {
        if (e.status !== 401 && !calls) fill(liveBox, notice('error', `Cannot load the calls: ${e.message}`));
      }
    }
    return {
      title: 'calls',
      mount(app) {
        liveBox = h('div', { class: 'live-calls', id: 'live-calls' }, h('p', { class: 'muted' }, 'Loading…'));
        recentBox = h('div', { class: 'card flush table-wrap', id: 'recent-calls' }, h('p', { class: 'muted pad' }, 'Loading…'));
        add(app, h('div', { class: 'view' },
          h('div', { class: 'view-head' }, h('h1', null, 'Live calls')),
          liveBox,
          h('div', { class: 'view-head' }, h('h1', null, 'Recent calls'), h('span', { class: 'muted small' }, 'SIP traces kept in memory; newest first')),
          recentBox));
        renderLive();
        renderRecent();
        load();
        unsub = stream.subscribe((kind) => {
          if (kind === 'calls') { calls = stream.calls; renderLive(); }
          if (kind === 'recent') { recent = stream.recent; renderRecent(); }
        });
        timer = setInterval(() => { if (stream.state !== 'live') load(); }, 5000);
      },
      unmount() { unsub(); clearInterval(timer); },
    };
  }

  // ---- one call

  function callView(id) {
    let call = null;
    let live = false;
    let head;
    let legsBox;
    let mediaBox;
    let ladderBox;
    let msgBox;
    let fixBox;
    let traceInfo;
    let unsub;
    let traceTimer;
    let tickTimer;
    let trace = null;
    let traceKey = '';
    let selectedSeq = null;
    let gone = false;
    let hangupArmed = false;

    function renderHead() {
      const c = call;
      const dur = callDuration(c);
      const kids = [
        h('div', { class: 'call-title' },
          h('h1', null, h('span', { class: 'party' }, c.from || '?'), h('span', { class: 'arrow' }, ' → '), h('span', { class: 'party' }, c.to || '?')),
          stateBadge(c.state),
          c.status ? h('span', { class: 'status-code', title: 'final response to the INVITE' }, String(c.status)) : null,
          live ? badge('live', 'live') : null,
          live || c.answered ? h('span', { class: 'dur num', id: 'call-duration', title: c.answered ? 'talk time' : 'ringing for' }, fmtClock(dur)) : null),
        h('div', { class: 'call-sub' },
          h('span', null, 'Call-ID ', mono(c.call_id)),
          h('span', null, 'started ', fmtTime(c.started)),
          c.answered ? h('span', null, 'answered ', fmtTime(c.answered)) : null,
          c.ended ? h('span', null, 'ended ', fmtTime(c.ended)) : null),
      ];
      if (live && c.state === 'answered') {
        const btn = h('button', { type: 'button', class: ['btn', 'danger', hangupArmed ? 'armed' : ''], id: 'hangup' }, hangupArmed ? 'Click again to hang up' : 'Hang up');
        btn.addEventListener('click', async () => {
          if (!hangupArmed) {
            hangupArmed = true;
            renderHead();
            setTimeout(() => { hangupArmed = false; if (head.isConnected) renderHead(); }, 4000);
            return;
          }
          hangupArmed = false;
          btn.disabled = true;
          try { await api(`/api/v1/calls/${encodeURIComponent(id)}`, { method: 'DELETE' }); } catch (e) { if (e.status !== 401) add(head, notice('error', `Hang-up failed: ${e.message}`)); }
        });
        kids.push(h('div', { class: 'head-actions' }, btn));
      }
      fill(head, ...kids);
    }

    function legCard(title, leg) {
      return h('div', { class: 'leg' },
        h('div', { class: 'leg-title' }, title, ' ', natBadge(leg.nat, leg.nat ? 'NAT handling applies to this side' : 'No NAT on this side')),
        leg.name ? h('div', { class: 'strong' }, leg.name) : null,
        h('div', null, mono(leg.flow || '–')));
    }

    function renderLegs() {
      const c = call;
      fill(legsBox,
        h('div', { class: 'legs' }, legCard('Caller', c.caller), h('div', { class: 'legs-arrow', 'aria-hidden': 'true' }, '⇄'), legCard('Callee', c.callee)),
        mediaLine(c),
        alarms(c));
    }

    function dirRow(c, st, si, d) {
      const leg = st.legs[d];
      const rate = stream.rate(c.call_id, si, d);
      const flags = [];
      if (leg.latched) flags.push('latched');
      if (leg.locked) flags.push('locked');
      if (leg.kernel) flags.push('in kernel');
      if (leg.hold) flags.push('on hold');
      if (leg.rtcp_mux) flags.push('rtcp-mux');
      const drops = [['foreign', leg.dropped_foreign], ['learning', leg.dropped_learning], ['malformed', leg.dropped_malformed], ['no target', leg.dropped_no_target]].filter(([, n]) => n > 0);
      const silent = live && c.state === 'answered' && rate === 0;
      return h('div', { class: ['dirrow', silent ? 'silent' : ''], 'data-stream': si, 'data-dir': dirKeys[d] },
        h('div', { class: 'dir-name' },
          h('div', { class: 'strong' }, d === 0 ? 'Caller → callee' : 'Callee → caller'),
          h('div', { class: 'sub' }, 'from ', mono(leg.announced || '?'), ' to relay :', String(leg.relay_port || '?')),
          h('div', { class: 'sub' }, 'sent on to ', mono(leg.target || '–'))),
        h('div', { class: 'metrics' },
          metric('Packets', fmtInt(leg.packets), 'packets', leg.packets),
          metric('Bytes', fmtBytes(leg.bytes), 'bytes', leg.bytes),
          metric('Rate', fmtRate(rate), 'rate', rate === null ? '' : rate.toFixed(2)),
          metric('Loss', fmtPct(leg.loss_percent), 'loss', leg.loss_percent, leg.loss_percent >= 5),
          metric('Jitter', fmtMs(leg.jitter_ms), 'jitter', leg.jitter_ms, leg.jitter_ms >= 50),
          metric('RTCP', fmtInt(leg.rtcp_packets), 'rtcp', leg.rtcp_packets)),
        h('div', { class: 'chart' }, live
          ? rateChart(stream.series(c.call_id, si, d), d === 0 ? 'caller → callee' : 'callee → caller')
          : h('span', { class: 'muted small' }, leg.last_seen ? `last packet ${fmtTime(leg.last_seen)}` : 'no packets')),
        h('div', { class: 'flags' },
          flags.map((f) => badge('flag', f)),
          silent ? badge('warn', 'no packets') : null,
          drops.length ? h('div', { class: 'sub' }, 'dropped: ', drops.map(([k, n]) => `${fmtInt(n)} ${k}`).join(', ')) : null,
          leg.reported_loss_percent || leg.reported_jitter_ms ? h('div', { class: 'sub' }, `RTCP says: loss ${fmtPct(leg.reported_loss_percent)}, jitter ${fmtMs(leg.reported_jitter_ms)}`) : null));
    }

    function metric(label, text, key, raw, bad) {
      return h('div', { class: ['metric', bad ? 'bad' : ''] },
        h('div', { class: 'metric-label' }, label),
        h('div', { class: `metric-value ${key}`, 'data-value': raw === null || raw === undefined ? '' : String(raw) }, text));
    }

    function renderMedia() {
      const c = call;
      const streams = c.streams || [];
      if (!streams.length) {
        fill(mediaBox, h('p', { class: 'muted' }, c.relayed ? 'No media streams yet.' : 'Media is not relayed through sipedge, so it has no counters.'));
        return;
      }
      fill(mediaBox, ...streams.map((st, si) => h('section', { class: 'card stream', 'data-stream': si },
        h('h2', null, `${st.media || 'stream'} #${st.index}: both ways`, live ? null : h('span', { class: 'muted small' }, ' (final counts)')),
        st.alarm ? h('div', { class: 'alarm', role: 'alert' }, h('span', { class: 'alarm-icon', 'aria-hidden': 'true' }, '⚠'), h('div', null, h('strong', null, 'One-way audio: '), st.alarm)) : null,
        dirRow(c, st, si, 0),
        dirRow(c, st, si, 1))));
    }

    // renderAll redraws what changed: the counters every time, the head
    // and legs only when they change (so a button is not replaced under
    // the mouse).
    let headKey = '';
    let legsKey = '';
    function renderAll() {
      if (call.traceOnly) {
        renderHead();
        fill(legsBox, notice('info', 'sipedge kept no media details of this call (it was not answered, or it ended too long ago); its SIP messages are below.'));
        fill(mediaBox);
        return;
      }
      const hk = JSON.stringify([call.state, call.answered, call.ended, live, hangupArmed]);
      if (hk !== headKey) { headKey = hk; renderHead(); }
      const lk = JSON.stringify([call.caller, call.callee, call.relayed, call.media_decision, call.alarms]);
      if (lk !== legsKey) { legsKey = lk; renderLegs(); }
      renderMedia();
    }

    // loadCall fetches the call: live, or a recent call's final snapshot.
    // A call with no snapshot (one that failed or was cancelled before an
    // answer) is shown from its SIP trace. A 404 is tried again retries
    // times (a call that just ended may take a moment to be filed). It
    // returns whether there is a call to show.
    async function loadCall(retries = 0) {
      for (let i = 0; ; i++) {
        try {
          const { data } = await api(`/api/v1/calls/${encodeURIComponent(id)}`);
          call = data;
          live = !call.ended && (call.state === 'ringing' || call.state === 'answered');
          renderAll();
          return true;
        } catch (e) {
          if (e.status === 401 || gone) return false;
          if (e.status !== 404) {
            fill(legsBox, notice('error', `Cannot load the call: ${e.message}`));
            return false;
          }
          if (i >= retries) break;
          await sleep(700);
        }
      }
      await loadTrace(true);
      if (gone) return false;
      if (trace) {
        call = {
          call_id: id, from: trace.from, to: trace.to, state: trace.state, status: trace.status,
          started: trace.started, answered: trace.answered, ended: trace.ended, traceOnly: true,
        };
        live = false;
        renderAll();
        return true;
      }
      gone = true;
      fill(head, h('h1', null, 'Call not found'));
      fill(legsBox, notice('error', 'sipedge knows no call with this Call-ID: it never saw it, or it has dropped off the recent calls.', h('div', null, mono(id))));
      fill(mediaBox);
      fill(ladderBox);
      fill(traceInfo);
      return false;
    }

    async function loadTrace(quiet) {
      try {
        const { data } = await api(`/api/v1/calls/${encodeURIComponent(id)}/trace`);
        if (gone) return;
        const key = `${data.message_count}|${(data.messages || []).length}|${data.state}|${data.dropped}`;
        if (key === traceKey) return;
        traceKey = key;
        trace = data;
        renderTrace();
      } catch (e) {
        if (e.status === 401 || quiet) return;
        if (!trace) {
          fill(traceInfo);
          fill(ladderBox, notice(e.status === 404 ? 'info' : 'error', e.status === 404 ? 'No SIP trace of this call is kept.' : `Cannot load the SIP trace: ${e.message}`));
        }
      }
    }

    function renderTrace() {
      const t = trace;
      const msgs = t.messages || [];
      fill(traceInfo,
        h('span', null, `${fmtInt(t.message_count)} messages`),
        t.dropped ? h('span', { class: 'warn' }, ` (${fmtInt(t.dropped)} not kept)`) : null,
        h('span', null, `, ${fmtBytes(t.bytes)} of SIP`));
      const ladder = t.ladder || { columns: [], arrows: [] };
      if (!ladder.columns || !ladder.columns.length || !ladder.arrows || !ladder.arrows.length) {
        fill(ladderBox, h('p', { class: 'muted' }, msgs.length ? 'No ladder could be drawn for this trace.' : 'No SIP messages recorded yet.'));
        fill(fixBox);
        return;
      }
      const { svg, fixes } = drawLadder(ladder, msgs, (seq) => select(seq), ladderBox.clientWidth);
      fill(ladderBox, h('div', { class: 'ladder-scroll' }, svg));
      placeBadges(svg);
      fill(fixBox, fixList(fixes));
      if (selectedSeq !== null) select(selectedSeq, true);
    }

    function select(seq, quiet) {
      selectedSeq = seq;
      for (const g of ladderBox.querySelectorAll('g.arrow')) g.classList.toggle('selected', Number(g.dataset.seq) === seq);
      const m = (trace.messages || []).find((x) => x.seq === seq);
      if (!m) {
        fill(msgBox, h('p', { class: 'muted' }, 'That message was not kept.'));
        return;
      }
      fill(msgBox,
        h('div', { class: 'msg-head' },
          h('strong', null, `#${m.seq} `, m.summary || m.method || String(m.status)),
          h('span', { class: 'sub' }, ` ${m.in ? 'received from' : 'sent to'} `, mono(m.remote), ' on ', mono(`${(m.transport || '').toLowerCase()} ${m.local}`)),
          h('span', { class: 'sub' }, ` · ${fmtOffset(m.offset_ms)} · ${fmtInt(m.size)} bytes`),
          m.truncated ? badge('warn', 'truncated') : null,
          h('button', { type: 'button', class: 'btn small', onclick: () => { selectedSeq = null; fill(msgBox, h('p', { class: 'muted' }, 'Click an arrow to see its SIP message.')); for (const g of ladderBox.querySelectorAll('g.arrow.selected')) g.classList.remove('selected'); } }, 'Close')),
        h('pre', { class: 'sip', id: 'sip-text', tabindex: '0' }, m.text || ''));
      if (!quiet) msgBox.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    }

    return {
      title: 'call',
      async mount(app) {
        head = h('div', { class: 'call-page-head' }, h('h1', null, 'Call'));
        legsBox = h('section', { class: 'card legs-card' }, h('p', { class: 'muted' }, 'Loading…'));
        mediaBox = h('div', { class: 'streams-box', id: 'streams' });
        traceInfo = h('span', { class: 'muted small' });
        ladderBox = h('div', { class: 'ladder-box', id: 'ladder' }, h('p', { class: 'muted' }, 'Loading the SIP trace…'));
        fixBox = h('div', { class: 'fixes-box', id: 'fixes' });
        msgBox = h('div', { class: 'msg-box', id: 'message' }, h('p', { class: 'muted' }, 'Click an arrow to see its SIP message.'));
        add(app, h('div', { class: 'view call-view', 'data-call-id': id },
          h('a', { href: '#/calls', class: 'back' }, '‹ Calls'),
          head, legsBox, mediaBox,
          h('section', { class: 'card trace' },
            h('h2', null, 'SIP ladder ', traceInfo),
            h('div', { class: 'trace-body' }, ladderBox, fixBox),
            msgBox)));
        const ok = await loadCall();
        if (!ok || gone) return;
        if (!trace) loadTrace();
        unsub = stream.subscribe((kind) => {
          if (kind !== 'calls' || gone) return;
          const c = stream.calls.find((x) => x.call_id === id);
          if (c) {
            call = c;
            live = true;
            renderAll();
          } else if (live) {
            // It ended: show its final snapshot and the whole trace.
            live = false;
            loadCall(3).then((found) => { if (found) { traceKey = ''; loadTrace(); } });
          }
        });
        traceTimer = setInterval(() => { if (live) loadTrace(); }, TRACE_REFRESH_MS);
        tickTimer = setInterval(() => {
          if (!live || !call) return;
          const el = $('#call-duration');
          if (el) el.textContent = fmtClock(callDuration(call));
        }, 1000);
      },
      unmount() { if (unsub) unsub(); clearInterval(traceTimer); clearInterval(tickTimer); gone = true; },
    };
  }

  // fixList lists the ladder's fixes, numbered like the arrows' badges.
  function fixList(fixes) {
    if (!fixes.length) return h('p', { class: 'muted small' }, 'sipedge changed nothing in these messages.');
    return h('div', null,
      h('h3', null, 'What sipedge fixed'),
      h('ol', { class: 'fixes', id: 'fix-list' }, fixes.map((f) => h('li', { class: ['fix', `fix-${f.kind}`, f.kind === 'warning' ? 'warn' : ''], value: f.n, 'data-seq': f.seq, 'data-kind': f.kind },
        h('span', { class: `badge fixkind ${f.kind === 'warning' ? 'warn' : ''}` }, f.kind), ' ',
        h('span', { class: 'fix-text' }, f.text),
        h('span', { class: 'sub' }, ` (${f.label})`)))));
  }

  // drawLadder draws the SIP ladder as SVG: a lifeline per column, an
  // arrow per message, NAT crossings marked, fixes numbered.
  function drawLadder(ladder, msgs, onSelect, avail) {
    const cols = ladder.columns;
    const arrows = ladder.arrows;
    const LEFT = 86;
    const GAPMS = 2000; // a pause longer than this gets a "later" mark
    const GAPH = 22;
    const COLW = Math.max(160, Math.min(250, Math.floor(((avail || 1000) - 86 - 20) / Math.max(1, cols.length))));
    const HEADH = 64;
    const ROWH = 34;
    const TOP = HEADH + 26;
    const W = LEFT + cols.length * COLW + 20;
    // Each arrow's y, with room for the marks of long pauses.
    const ys = [];
    const gaps = [];
    let yy = TOP;
    arrows.forEach((a, i) => {
      if (i > 0 && a.offset_ms - arrows[i - 1].offset_ms > GAPMS) {
        gaps.push([yy - ROWH / 2 + GAPH / 2 + 2, (a.offset_ms - arrows[i - 1].offset_ms) / 1000]);
        yy += GAPH;
      }
      ys.push(yy);
      yy += ROWH;
    });
    const H = yy - ROWH + 26;
    const cx = (i) => LEFT + i * COLW + COLW / 2;

    const svg = s('svg', {
      class: 'ladder', id: 'ladder-svg', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `SIP ladder: ${arrows.length} messages between ${cols.map((c) => c.label).join(', ')}`,
      'data-arrows': arrows.length,
    });

    // Headers and lifelines.
    cols.forEach((c, i) => {
      const x = cx(i);
      const nat = c.kind === 'nat';
      const g = s('g', { class: `col col-${c.kind}`, 'data-col': i, 'data-kind': c.kind });
      add(g, s('line', { x1: x, y1: HEADH, x2: x, y2: H - 6, class: nat ? 'lifeline nat' : 'lifeline' }));
      const bw = COLW - 24;
      add(g, s('rect', { x: x - bw / 2, y: 6, width: bw, height: HEADH - 12, rx: nat ? 4 : 7, class: 'col-box' }));
      add(g, s('text', { x, y: 25, class: 'col-label', 'text-anchor': 'middle' }, clip(nat && !/nat/i.test(c.label) ? `NAT ${c.label}` : c.label, Math.floor(bw / 7.5))));
      if (c.addr) add(g, s('text', { x, y: 41, class: 'col-addr', 'text-anchor': 'middle' }, clip(c.addr, Math.floor(bw / 6.8))));
      if (c.note) add(g, s('text', { x, y: 53, class: 'col-note', 'text-anchor': 'middle' }, clip(c.note, Math.floor(bw / 5.6))));
      add(g, s('title', null, [c.label, c.addr, c.note].filter(Boolean).join('\n')));
      add(svg, g);
    });

    const fixes = [];
    let n = 0;
    for (const [gy, sec] of gaps) {
      add(svg, s('rect', { x: LEFT, y: gy - 9, width: W - LEFT - 20, height: 16, class: 'gap-band' }));
      add(svg, s('text', { x: LEFT + (W - LEFT - 20) / 2, y: gy + 3, class: 'gap', 'text-anchor': 'middle' }, `${fmtAbout(sec)} later`));
    }
    arrows.forEach((a, i) => {
      const y = ys[i];
      const x1 = cx(a.from);
      const x2 = cx(a.to);
      const dir = x2 >= x1 ? 1 : -1;
      const afix = (a.fixes || []).filter((f) => f && f.text);
      const warn = afix.some((f) => f.kind === 'warning');
      const first = n + 1;
      for (const f of afix) {
        n++;
        fixes.push({ n, seq: a.seq, kind: f.kind, text: f.text, label: a.label });
      }
      const m = msgs.find((x) => x.seq === a.seq);
      const cls = ['arrow', a.retransmission ? 'retrans' : '', afix.length ? 'has-fix' : '', warn ? 'has-warn' : '', m && m.status ? 'response' : 'request'];
      const g = s('g', {
        class: cls.filter(Boolean).join(' '), 'data-seq': a.seq, 'data-fixes': afix.length, tabindex: '0', role: 'button',
        'aria-label': `${a.label}${afix.length ? `, ${afix.length} fix${afix.length > 1 ? 'es' : ''}` : ''}; show the message`,
      });
      add(g, s('text', { x: LEFT - 10, y: y + 4, class: 'offset', 'text-anchor': 'end' }, fmtOffset(a.offset_ms)));
      add(g, s('rect', { x: Math.min(x1, x2) - 4, y: y - ROWH / 2 + 2, width: Math.abs(x2 - x1) + 8, height: ROWH - 4, class: 'hit' }));
      if (a.from === a.to) {
        add(g, s('path', { d: `M${x1},${y - 6} h28 v12 h-24`, class: 'shaft' }));
        add(g, s('path', { d: `M${x1 + 4},${y + 2} l6,4 l-6,4 z`, class: 'head', transform: `rotate(180 ${x1 + 7} ${y + 6})` }));
      } else {
        add(g, s('line', { x1, y1: y, x2: x2 - dir * 8, y2: y, class: 'shaft' }));
        add(g, s('path', { d: `M${x2},${y} l${-dir * 9},-4.5 v9 z`, class: 'head' }));
      }
      if (a.through >= 0 && a.through < cols.length) {
        const tx = cx(a.through);
        add(g, s('path', { d: `M${tx},${y - 6} l6,6 l-6,6 l-6,-6 z`, class: 'nat-mark' },
          s('title', null, `crosses ${cols[a.through].label}: address translated`)));
      }
      const mid = (x1 + x2) / 2;
      const lx = a.from === a.to ? x1 + 36 : mid;
      const text = clip(a.label || '', 34);
      add(g, s('text', { x: lx, y: y - 9, class: 'label', 'text-anchor': a.from === a.to ? 'start' : 'middle' }, text));
      if (afix.length) {
        // Beside the label; placeBadges moves it once the label's real
        // width is known.
        const txt = afix.length > 1 ? `${first}–${n}` : String(first);
        const bw = 9 + txt.length * 6.5;
        const bx = lx + (a.from === a.to ? text.length * 7 : text.length * 3.6) + 6;
        const badgeG = s('g', { class: 'fix-mark', transform: `translate(${bx.toFixed(1)} ${y - 22})` },
          s('rect', { x: 0, y: 0, width: bw, height: 15, rx: 7.5, class: 'fix-badge' }),
          s('text', { x: bw / 2, y: 11, class: 'fix-num', 'text-anchor': 'middle' }, txt));
        badgeG.dataset.y = String(y - 22);
        add(g, badgeG);
      }
      if (a.retransmission) add(g, s('title', null, `${a.label} (retransmission)`));
      else add(g, s('title', null, `${a.label}${m ? `\n${m.in ? 'received from' : 'sent to'} ${m.remote}` : ''}`));
      g.addEventListener('click', () => onSelect(a.seq));
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onSelect(a.seq); } });
      add(svg, g);
    });
    return { svg, fixes };
  }

  // placeBadges puts each fix badge just right of its arrow's label, now
  // that the SVG is in the document and text can be measured.
  function placeBadges(svg) {
    for (const m of svg.querySelectorAll('g.fix-mark')) {
      const label = m.parentNode.querySelector('text.label');
      if (!label || !label.getBBox) continue;
      let box;
      try { box = label.getBBox(); } catch { continue; }
      if (!box.width) continue;
      m.setAttribute('transform', `translate(${(box.x + box.width + 5).toFixed(1)} ${m.dataset.y})`);
    }
  }

  function clip(t, n) {
    t = String(t || '');
    return t.length > n ? `${t.slice(0, n - 1)}…` : t;
  }

  // ------------------------------------------------------------ header

  function headerUpdates() {
    stream.subscribe((kind) => {
      if (kind === 'status' && stream.status) {
        $('#version').textContent = stream.status.version ? ` ${stream.status.version}` : '';
      }
      if (kind === 'calls') {
        const el = $('#call-count');
        const n = stream.calls.length;
        el.textContent = String(n);
        el.hidden = n === 0;
      }
    });
  }

  // ------------------------------------------------------------ start

  function start() {
    takeTokenFromURL();
    $('#signout').hidden = !token;
    $('#signout').addEventListener('click', () => {
      authFailed = null;
      setToken(null);
      stream.stop();
      route();
    });
    headerUpdates();
    window.addEventListener('hashchange', () => {
      if (/token=/.test(location.hash)) {
        authFailed = null;
        stream.stop();
        takeTokenFromURL();
      }
      route();
    });
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
