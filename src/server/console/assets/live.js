// The console's live pages in the browser: incident view, pending machines, recoveries and a
// recovery's live log. The server renders each page complete; this script only keeps it
// current from one server-sent event stream per page (see src/server/console/live/).
// Everything a rescue machine reported arrives as plain strings and is inserted as text
// (textContent, DOM nodes), never as HTML — with one exception, explained at appendLogLines.
/* global document, window, EventSource */
'use strict';

(function () {
  var root = document.querySelector('.live[data-live]');
  // ---- small DOM helpers ----

  /** el('a', {href: '/x', class: 'y'}, 'text', child): text children become text nodes. */
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'class') e.className = v;
        else e.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) e.appendChild(typeof x === 'string' ? document.createTextNode(x) : x); });
      else e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
  }

  // The server's clock, for elapsed times and "ago" (the browser's may be off).
  var skew = 0;
  if (root && root.dataset.now) skew = Date.parse(root.dataset.now) - Date.now();
  var serverNow = function () { return Date.now() + skew; };

  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    var two = function (n) { return (n < 10 ? '0' : '') + n; };
    if (h > 0) return h + 'h ' + two(m) + 'm';
    if (m > 0) return m + 'm ' + two(sec) + 's';
    return sec + 's';
  }

  function tick() {
    var now = serverNow();
    document.querySelectorAll('[data-since]').forEach(function (e) {
      var until = e.getAttribute('data-until');
      e.textContent = duration((until ? Date.parse(until) : now) - Date.parse(e.getAttribute('data-since')));
    });
    document.querySelectorAll('[data-ago]').forEach(function (e) {
      e.textContent = '(' + duration(now - Date.parse(e.getAttribute('data-ago'))) + ' ago)';
    });
  }
  tick();
  setInterval(tick, 1000);

  if (!root) return;

  var note = root.querySelector('.live-note');
  var noteState = note ? note.querySelector('.live-state') : null;
  function liveState(text, cls) {
    if (!note) return;
    note.hidden = false;
    note.className = 'live-note ' + (cls || '');
    noteState.textContent = text;
  }
  var statusRegion = root.querySelector('#live-status');
  function announce(text) {
    if (statusRegion) statusRegion.textContent = text;
  }

  /**
   * One EventSource for the page. The browser reconnects by itself after a dropped
   * connection (sending Last-Event-ID); when it gives up (an error answer, readyState
   * CLOSED), this reconnects with a backoff, building the URL from the last position.
   */
  function connect(urlFor, handlers) {
    var es = null;
    var delay = 1000;
    var ended = false;
    var lastId = null;
    function open() {
      es = new EventSource(urlFor(lastId));
      es.onopen = function () {
        delay = 1000;
        liveState('Live', 'on');
      };
      es.onerror = function () {
        if (ended) return;
        liveState('Reconnecting…', 'off');
        if (es.readyState === EventSource.CLOSED) {
          setTimeout(open, delay);
          delay = Math.min(delay * 2, 30000);
        }
      };
      Object.keys(handlers).forEach(function (name) {
        es.addEventListener(name, function (ev) {
          if (ev.lastEventId) lastId = ev.lastEventId;
          handlers[name](JSON.parse(ev.data), ev);
        });
      });
      es.addEventListener('end', function () {
        ended = true;
        es.close();
        liveState('Finished: nothing more will come', 'done');
      });
    }
    open();
    return {
      close: function () { ended = true; if (es) es.close(); },
      /** The page's own "reconnect now" (tests and the offline case). */
      source: function () { return es; },
    };
  }

  // ---- shared pieces, built as the server builds them (live/views.ts) ----

  function hostCell(host) {
    if (host === null) return el('em', { class: 'unknown' }, 'unknown machine');
    return el('a', { href: '/recoveries?host=' + encodeURIComponent(host) }, host);
  }

  function phaseBadge(r) {
    var f = document.createDocumentFragment();
    f.appendChild(el('span', { class: 'phase phase-' + r.phase }, r.phase));
    if (r.silent) {
      f.appendChild(document.createTextNode(' '));
      f.appendChild(el('span', { class: 'badge silent', title: 'no sign of life for a while' }, 'silent'));
    }
    return f;
  }

  function elapsed(r) {
    return el('span', { class: 'elapsed', 'data-since': r.started, 'data-until': r.ended }, r.elapsedText);
  }

  function lastSign(r) {
    var f = document.createDocumentFragment();
    f.appendChild(el('time', { datetime: r.lastSign }, r.lastSignText));
    f.appendChild(document.createTextNode(' '));
    f.appendChild(el('span', { class: 'ago', 'data-ago': r.lastSign }));
    return f;
  }

  // ---- incident view ----

  function incidentRow(r) {
    return el('tr', { id: 'recovery-' + r.id, class: 'bucket-' + r.bucket },
      el('td', null, el('a', { href: '/recoveries/' + r.id }, '#' + r.id)),
      el('td', null, hostCell(r.host)),
      el('td', null, phaseBadge(r)),
      el('td', null, elapsed(r)),
      el('td', null, lastSign(r)),
      el('td', null, el('ul', { class: 'events' }, r.events.map(function (e) {
        return el('li', null, el('time', { datetime: e.time }, e.timeText), ' ', el('span', { class: 'kind kind-' + e.kind }, e.kind), ' ', el('span', { class: 'msg' }, e.message));
      }))));
  }

  function applyIncident(s) {
    s.counts.forEach(function (c) {
      var li = root.querySelector('#incident-counts [data-bucket="' + c.bucket + '"] .n');
      if (li) li.textContent = String(c.n);
    });
    var pn = root.querySelector('#pending-note');
    if (pn) {
      pn.hidden = s.pendingMachines === 0;
      pn.querySelector('.n').textContent = String(s.pendingMachines);
    }
    var body = root.querySelector('#incident-rows');
    clear(body);
    s.rows.forEach(function (r) { body.appendChild(incidentRow(r)); });
    root.querySelector('#incident-table').hidden = s.rows.length === 0;
    root.querySelector('#incident-empty').hidden = s.rows.length !== 0;
    skew = Date.parse(s.now) - Date.now();
    tick();
  }

  // ---- pending machines ----

  var operate = root.dataset.operate === '1';

  function factList(facts, cls) {
    return el('dl', { class: cls || 'facts' }, facts.map(function (f) {
      return el('div', null, el('dt', null, f[0]), el('dd', null, f[1]));
    }));
  }

  function table(cls, caption, heads, rows) {
    return el('table', { class: cls }, el('caption', null, caption),
      el('thead', null, el('tr', null, heads.map(function (h) { return el('th', { scope: 'col' }, h); }))),
      el('tbody', null, rows.map(function (r) { return el('tr', null, r.map(function (c) { return el('td', null, c); })); })));
  }

  function hardware(h) {
    if (!h) return [el('p', { class: 'muted' }, 'No hardware report.')];
    return [
      h.summary.length ? factList(h.summary, 'facts hw-summary') : null,
      h.disks.length ? table('hw disks', 'Disks', ['Disk', 'Size', 'Model'], h.disks) : el('p', { class: 'muted' }, 'No disks reported.'),
      h.nics.length ? table('hw nics', 'Network interfaces', ['Interface', 'MAC', 'Driver'], h.nics) : el('p', { class: 'muted' }, 'No network interfaces reported.'),
    ];
  }

  function hints(c) {
    if (!c.hints.length) return el('p', { class: 'muted' }, 'No host resembles this machine.');
    return el('ol', { class: 'hints' }, c.hints.map(function (h) {
      return el('li', null,
        el('span', { class: 'hint-host' }, h.host), ' ', el('span', { class: 'score' }, h.score + '%'),
        operate ? [' ', el('a', { class: 'button small', href: '/pending/' + c.id + '/assign?host=' + encodeURIComponent(h.host) }, 'Assign to ' + h.host + '…')] : null,
        el('ul', { class: 'reasons' }, h.reasons.map(function (r) { return el('li', null, r); })));
    }));
  }

  function pendingInfo(c) {
    return [
      el('h2', { id: 'pending-' + c.id + '-h' }, c.title),
      el('div', { class: 'cols' },
        el('section', null, el('h3', null, 'Identity'), factList(c.facts), c.recovery !== null ? el('p', null, el('a', { href: '/recoveries/' + c.recovery }, 'Recovery #' + c.recovery)) : null),
        el('section', null, el('h3', null, 'Hardware'), hardware(c.hardware)),
        el('section', null, el('h3', null, 'Match hints'), hints(c))),
    ];
  }

  function pendingActions(c) {
    var input = el('input', { id: 'host-' + c.id, name: 'host', list: 'host-ids', autocomplete: 'off', required: 'required' });
    input.value = c.hints.length ? c.hints[0].host : '';
    return el('div', { class: 'pending-actions' },
      el('form', { method: 'get', action: '/pending/' + c.id + '/assign', class: 'assign-form' },
        el('label', { for: 'host-' + c.id }, 'Assign to host'), ' ', input, ' ', el('button', { type: 'submit' }, 'Assign…')),
      ' ', el('a', { class: 'button secondary', href: '/pending/' + c.id + '/forget' }, 'Forget…'));
  }

  // What each card shows, to replace only what changed (an operator may be typing in a card).
  var shown = {};
  root.querySelectorAll('.pending-card').forEach(function (card) { shown[card.dataset.id] = null; });

  function applyPending(s) {
    var list = root.querySelector('#pending-list');
    var keep = {};
    var appeared = [];
    s.machines.forEach(function (c, i) {
      var key = String(c.id);
      keep[key] = true;
      var json = JSON.stringify(c);
      var card = document.getElementById('pending-' + c.id);
      if (!card) {
        card = el('article', { class: 'pending-card new', id: 'pending-' + c.id, 'data-id': c.id, 'aria-labelledby': 'pending-' + c.id + '-h' },
          el('div', { class: 'pending-info' }, pendingInfo(c)),
          operate ? pendingActions(c) : null);
        appeared.push(c.title);
      } else if (shown[key] !== json) {
        var info = card.querySelector('.pending-info');
        clear(info);
        pendingInfo(c).forEach(function (n) { info.appendChild(n); });
      }
      shown[key] = json;
      // Newest first, as the server renders; move only what is out of place (moving blurs).
      if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
    });
    Array.prototype.slice.call(list.children).forEach(function (card) {
      if (!keep[card.dataset.id]) {
        delete shown[card.dataset.id];
        list.removeChild(card);
      }
    });
    root.querySelector('#pending-empty').hidden = s.machines.length !== 0;
    if (appeared.length) announce('New pending machine: ' + appeared.join(', '));
  }

  // ---- a recovery and its log ----

  function timelineItem(e) {
    return el('li', { class: 'kind-' + e.kind, 'data-seq': e.seq },
      el('time', { datetime: e.time }, e.timeText), ' ', el('span', { class: 'kind' }, e.kind),
      e.actor ? [' ', el('span', { class: 'actor' }, 'by ', el('code', null, e.actor))] : null,
      e.message ? [' ', el('span', { class: 'msg' }, e.message)] : null,
      e.detail ? [' ', el('span', { class: 'detail' }, e.detail)] : null);
  }

  function recoveryPage() {
    var id = root.dataset.recovery;
    var timeline = root.querySelector('#timeline');
    var log = root.querySelector('#log');
    var paused = root.querySelector('#log-paused');
    var followBtn = root.querySelector('#log-follow');
    var search = root.querySelector('#log-search');
    var matches = root.querySelector('#log-matches');
    var jump = root.querySelector('#jump-error');
    root.querySelectorAll('.js-only').forEach(function (e) { e.hidden = false; });

    // Following: at the bottom the log keeps up; scrolling up pauses it until the reader
    // jumps back to the end (or scrolls down to it).
    var following = true;
    var programmatic = false;
    function atBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    }
    function setFollowing(on) {
      following = on;
      paused.hidden = on;
      followBtn.setAttribute('aria-pressed', on ? 'true' : 'false');
      followBtn.textContent = on ? 'Following' : 'Follow';
      root.classList.toggle('log-is-paused', !on);
    }
    function toEnd() {
      programmatic = true;
      log.scrollTop = log.scrollHeight;
      setTimeout(function () { programmatic = false; }, 50);
    }
    log.addEventListener('scroll', function () {
      if (programmatic) return;
      var bottom = atBottom();
      if (following && !bottom) setFollowing(false);
      else if (!following && bottom) setFollowing(true);
    });
    root.querySelector('#log-resume').addEventListener('click', function () {
      setFollowing(true);
      toEnd();
    });
    followBtn.addEventListener('click', function () {
      setFollowing(!following);
      if (following) toEnd();
    });
    if (jump) {
      jump.addEventListener('click', function (ev) {
        var first = document.getElementById('first-error');
        if (!first) return;
        ev.preventDefault();
        setFollowing(false);
        programmatic = true;
        log.scrollIntoView({ block: 'nearest' });
        // The log is positioned (live.css): a line's offsetTop is within it.
        log.scrollTop = first.offsetTop - log.clientHeight / 3;
        setTimeout(function () { programmatic = false; }, 50);
        first.classList.add('flash');
        setTimeout(function () { first.classList.remove('flash'); }, 1500);
      });
    }

    // Search: a filter over the lines loaded so far, counting and marking the matches.
    var query = '';
    function filterLine(line) {
      var hit = query !== '' && line.textContent.toLowerCase().indexOf(query) >= 0;
      line.classList.toggle('filtered-out', query !== '' && !hit);
      line.classList.toggle('match', hit);
      return hit;
    }
    function runSearch() {
      query = search.value.trim().toLowerCase();
      var n = 0;
      log.querySelectorAll('.log-line').forEach(function (l) { if (filterLine(l)) n++; });
      matches.textContent = query ? n + (n === 1 ? ' matching line' : ' matching lines') : '';
    }
    search.addEventListener('input', runSearch);

    // Lines of one batch are not in the document yet when marked: a flag, not a lookup.
    var hasFirstError = document.getElementById('first-error') !== null;
    function markFirstError(line) {
      if (hasFirstError) return;
      hasFirstError = true;
      line.id = 'first-error';
      if (jump) jump.hidden = false;
    }

    /**
     * Appends log lines. Each line's HTML was produced by the server: the log text escaped
     * by the ANSI library (escapeXML), with only the span/b/i/u/s tags the library writes for
     * colours (live/ansi.ts), so it holds no markup a rescue machine could have chosen; that
     * is why it is parsed as HTML here, where everything else is inserted as text.
     */
    function appendLogLines(lines) {
      var frag = document.createDocumentFragment();
      lines.forEach(function (l) {
        var span = document.createElement('span');
        span.className = 'log-line' + (l[1] ? ' log-error' : '');
        span.innerHTML = l[0];
        span.appendChild(document.createTextNode('\n'));
        if (query) filterLine(span);
        frag.appendChild(span);
        if (l[1]) markFirstError(span);
      });
      log.appendChild(frag);
      if (query) runSearch();
      if (following) toEnd();
    }

    function setLogMeta(logId, state) {
      var meta = root.querySelector('#log-meta');
      clear(meta);
      meta.appendChild(document.createTextNode('Log ' + logId + ', '));
      meta.appendChild(el('span', { id: 'log-state' }, state));
      meta.appendChild(document.createTextNode('. '));
      meta.appendChild(el('a', { href: '/recoveries/' + id + '/log.txt', download: '' }, 'Download the log'));
    }

    function applyStatus(r) {
      var set = function (field, node) {
        var dd = root.querySelector('[data-field="' + field + '"]');
        if (!dd) return;
        clear(dd);
        dd.appendChild(node);
      };
      set('host', hostCell(r.host));
      set('phase', phaseBadge(r));
      set('lastSign', lastSign(r));
      set('ended', document.createTextNode(r.endedText));
      var outcome = r.active ? '-' : (r.error ? r.error : (r.exitStatus === null ? r.phase : 'exit status ' + r.exitStatus));
      set('outcome', document.createTextNode(outcome));
      root.querySelectorAll('#recovery-status [data-since]').forEach(function (e) {
        if (r.ended) e.setAttribute('data-until', r.ended);
      });
      document.getElementById('recovery-title').textContent = 'Recovery #' + r.id + ': ' + (r.host === null ? 'unknown machine' : r.host);
      tick();
    }

    var base = root.dataset.stream;
    var live = connect(function (lastId) {
      // After our own reconnect: continue from the last position the page holds.
      if (!lastId) return base;
      var p = lastId.split('.');
      return '/live/recoveries/' + id + '/stream?seq=' + p[0] + '&log=' + p[1] + '&offset=' + p[2];
    }, {
      hello: function () {},
      timeline: function (e) {
        if (timeline.querySelector('[data-seq="' + e.seq + '"]')) return;
        timeline.appendChild(timelineItem(e));
      },
      status: applyStatus,
      'log-start': function (d) {
        clear(log);
        var first = document.getElementById('first-error');
        if (first) first.removeAttribute('id');
        hasFirstError = false;
        if (jump) jump.hidden = true;
        setLogMeta(d.log, 'receiving');
      },
      log: function (d) { appendLogLines(d.lines); },
      'log-end': function (d) {
        var st = root.querySelector('#log-state');
        if (st) st.textContent = d.complete ? 'complete' : 'ended before it was complete';
      },
    });
    window.ruLive = live;
    toEnd();
  }

  // ---- start ----

  var kind = root.dataset.live;
  if (kind === 'incident') window.ruLive = connect(function () { return root.dataset.stream; }, { hello: function () {}, incident: applyIncident });
  else if (kind === 'pending') window.ruLive = connect(function () { return root.dataset.stream; }, { hello: function () {}, pending: applyPending });
  else if (kind === 'recovery') recoveryPage();
})();
