// The live calls page: a snapshot, then server-sent events read with fetch (so the
// bearer token travels in a header, never in the address), and a hang-up button.
(() => {
  'use strict';

  const el = (id) => document.getElementById(id);
  const ui = {
    status: el('live-status'),
    calls: el('calls'),
    noCalls: el('no-calls'),
    count: el('active-count'),
    ended: el('ended').querySelector('tbody'),
    token: el('token'),
    tokenBox: el('token-box'),
  };
  const calls = new Map();
  let stream = null;

  // A token in the address's fragment never reaches the server or its logs.
  const params = new URLSearchParams(window.location.hash.slice(1));
  if (params.get('token')) ui.token.value = params.get('token');

  function headers() {
    const token = ui.token.value.trim();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function seconds(total) {
    const s = Math.max(0, Math.floor(total));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, '0')}`;
  }

  // ------------------------------------------------------------------ live calls

  function addLine(card, line) {
    const p = document.createElement('p');
    p.dataset.speaker = line.speaker;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = line.speaker === 'caller' ? 'Caller' : line.speaker === 'agent' ? 'Agent' : line.speaker;
    p.append(who, document.createTextNode(line.text + (line.truncated ? ' …' : '')));
    const box = card.querySelector('.transcript');
    box.append(p);
    box.scrollTop = box.scrollHeight;
  }

  function addCall(call) {
    if (calls.has(call.id)) return;
    const card = document.createElement('article');
    card.className = 'call panel';
    card.dataset.callId = call.id;
    const head = document.createElement('header');
    const title = document.createElement('h3');
    title.textContent = call.caller || 'unknown caller';
    const facts = document.createElement('p');
    facts.className = 'facts';
    const duration = document.createElement('span');
    duration.className = 'duration';
    facts.append(
      document.createTextNode(`${call.profile} · ${call.kind} · ${call.codec}` +
        (call.dialled ? ` · dialled ${call.dialled}` : '') + ' · '),
      duration,
    );
    const hangup = document.createElement('button');
    hangup.type = 'button';
    hangup.className = 'hangup';
    hangup.textContent = 'Hang up';
    hangup.addEventListener('click', () => hangUp(call.id, hangup));
    head.append(title, facts, hangup);
    const transcript = document.createElement('div');
    transcript.className = 'transcript';
    card.append(head, transcript);
    ui.calls.append(card);
    const startedAt = Date.now() - call.duration_s * 1000;
    calls.set(call.id, { card, duration, startedAt });
    for (const line of call.transcript || []) addLine(card, line);
    refresh();
  }

  function removeCall(id) {
    const entry = calls.get(id);
    if (!entry) return;
    entry.card.remove();
    calls.delete(id);
    refresh();
  }

  function refresh() {
    ui.count.textContent = String(calls.size);
    ui.noCalls.hidden = calls.size > 0;
    const now = Date.now();
    for (const entry of calls.values()) {
      entry.duration.textContent = seconds((now - entry.startedAt) / 1000);
    }
  }

  async function hangUp(id, button) {
    button.disabled = true;
    const response = await fetch(`live/calls/${encodeURIComponent(id)}/hangup`, {
      method: 'POST',
      headers: headers(),
    });
    if (!response.ok) {
      button.disabled = false;
      setStatus(`Could not hang up: ${response.status} ${response.statusText}`);
    }
  }

  // ------------------------------------------------------------------ ended calls

  // Records and recordings are behind the token too: a click fetches them with it and
  // shows the result (the record as JSON in a new tab, the recording in a player).
  function link(href, text, row) {
    if (!href) return document.createTextNode('—');
    const a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    a.addEventListener('click', async (event) => {
      if (!ui.token.value.trim()) return;
      event.preventDefault();
      const response = await fetch(href, { headers: headers() });
      if (!response.ok) {
        setStatus(`Could not open the ${text}: ${response.status} ${response.statusText}`);
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      if (text === 'recording') {
        const player = document.createElement('audio');
        player.controls = true;
        player.src = url;
        row.lastChild.append(player);
      } else {
        window.open(url, '_blank', 'noopener');
      }
    });
    return a;
  }

  function addEnded(call, atTop) {
    const row = document.createElement('tr');
    row.dataset.callId = call.id;
    const cells = [
      call.caller || 'unknown',
      call.profile,
      seconds(call.duration_s),
      String(call.end_reason || '').replace(/_/g, ' '),
    ];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      row.append(td);
    }
    const links = document.createElement('td');
    links.append(link(call.record, 'record', row));
    if (call.recording) {
      links.append(document.createTextNode(' · '), link(call.recording, 'recording', row));
    }
    row.append(links);
    if (atTop) ui.ended.prepend(row);
    else ui.ended.append(row);
    while (ui.ended.rows.length > 20) ui.ended.deleteRow(-1);
  }

  // ------------------------------------------------------------------ events

  function onEvent(name, data) {
    if (name === 'snapshot') {
      for (const id of [...calls.keys()]) removeCall(id);
      ui.ended.replaceChildren();
      for (const call of data.calls) addCall(call);
      for (const call of data.ended) addEnded(call, false);
      setStatus(data.draining ? 'Connected. The server is draining: no new calls.' : 'Connected.');
    } else if (name === 'call_started') {
      addCall(data.call);
    } else if (name === 'transcript') {
      const entry = calls.get(data.call_id);
      if (entry) addLine(entry.card, data);
    } else if (name === 'call_ended') {
      removeCall(data.call.id);
      addEnded(data.call, true);
    }
  }

  async function connect() {
    if (stream) stream.abort();
    const controller = new AbortController();
    stream = controller;
    try {
      const response = await fetch('live/events', { headers: headers(), signal: controller.signal });
      if (response.status === 401) {
        ui.tokenBox.open = true;
        setStatus('This server needs its access token: enter it below.');
        return;
      }
      if (!response.ok) {
        setStatus(`The server refused: ${response.status} ${response.statusText}`);
        return;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) name = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data) onEvent(name, JSON.parse(data));
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (stream === controller) {
      setStatus('Disconnected; reconnecting…');
      setTimeout(connect, 2000);
    }
  }

  el('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    connect();
  });
  setInterval(refresh, 1000);
  connect();
})();
