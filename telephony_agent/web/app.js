// The demo page: one browser call to the agent over WebRTC.
//
// Signalling is a single POST: the page gathers all of its ICE candidates first
// (the server does not take trickled candidates), sends the complete offer to
// webrtc/offer and applies the answer. Everything else travels on the peer
// connection: the microphone up, the agent's voice down, JSON events (transcript,
// latency, the end of the call) on the "events" data channel, and keypad digits
// on the "dtmf" channel. Paths are relative so the page also works behind a
// reverse proxy that mounts it under a prefix.
'use strict';

(() => {
  const ICE_GATHERING_TIMEOUT_MS = 5000;
  const REASONS = {
    agent_hangup: 'the agent hung up',
    max_duration: 'the call reached its maximum duration',
    shutdown: 'the server is shutting down',
    provider_failed: 'the speech model kept failing',
    connection_failed: 'the connection was lost',
    ice_timeout: 'the connection could not be established',
  };

  const el = (id) => document.getElementById(id);
  const ui = {
    call: el('call'),
    hangup: el('hangup'),
    status: el('status'),
    level: el('level'),
    transcript: el('transcript'),
    latency: el('latency'),
    remote: el('remote'),
    token: el('token'),
    headset: el('headset'),
    tokenBox: el('token-box'),
    keypad: el('keypad'),
  };

  // One object per call attempt; handlers check it is still the current one, so a
  // late event from a finished call never overwrites the status of the next.
  let current = null;

  function setStatus(text, isError = false) {
    ui.status.textContent = text;
    ui.status.classList.toggle('error', isError);
  }

  function setInCall(inCall) {
    ui.call.disabled = inCall;
    ui.hangup.disabled = !inCall;
  }

  // A token in the address's fragment never reaches the server or its logs; it is
  // moved into the field and removed from the address bar and history.
  function takeTokenFromAddress() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const token = params.get('token');
    if (token) {
      ui.token.value = token;
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
    }
  }

  // Echo cancellation stays on unless the caller says otherwise: through laptop
  // speakers the agent would otherwise hear itself and keep interrupting its own
  // turns. With a headset there is no echo, and raw audio is cleaner for the model.
  function audioConstraints() {
    const processing = !ui.headset.checked;
    return {
      echoCancellation: processing,
      noiseSuppression: processing,
      autoGainControl: processing,
    };
  }

  // The page URL may name the agent profile to talk to: /?profile=booking
  function offerBody(sdp) {
    const body = { sdp, type: 'offer' };
    const profile = new URLSearchParams(window.location.search).get('profile');
    if (profile) body.profile = profile;
    return body;
  }

  function authHeaders() {
    const token = ui.token.value.trim();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function describeReason(reason) {
    return REASONS[reason] || String(reason || 'unknown reason').replace(/_/g, ' ');
  }

  async function serverMessage(response) {
    const text = await response.text();
    try {
      const data = JSON.parse(text);
      if (data && typeof data.error === 'string') return data.error;
    } catch (_) {
      // Not JSON: the text itself is the message.
    }
    return text.trim() || response.statusText;
  }

  // ------------------------------------------------------------------ transcript

  function addTranscript(speaker, text) {
    const line = document.createElement('p');
    line.dataset.speaker = speaker;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = speaker === 'caller' ? 'You' : speaker === 'agent' ? 'Agent' : 'System';
    line.append(who, document.createTextNode(text));
    ui.transcript.append(line);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }

  function addLatency(event) {
    const item = document.createElement('li');
    const delta = Math.round(Number(event.to_first_delta_ms));
    const frame = Math.round(Number(event.to_first_frame_ms));
    item.textContent = `${frame} ms from the end of your turn to the agent's voice (model ${delta} ms)`;
    ui.latency.append(item);
  }

  // ------------------------------------------------------------------ microphone meter

  function startMeter(call, stream) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    const context = new Context();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    call.meter = context;
    const draw = () => {
      if (current !== call) return;
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      const db = rms > 0 ? 20 * Math.log10(rms) : -100;
      const percent = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
      ui.level.style.width = `${percent}%`;
      requestAnimationFrame(draw);
    };
    requestAnimationFrame(draw);
  }

  // ------------------------------------------------------------------ the call

  function waitForIceGathering(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== 'complete') return;
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      };
      pc.addEventListener('icegatheringstatechange', done);
      // Send what was gathered rather than hang on an unreachable STUN server.
      setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
    });
  }

  function onEvent(call, message) {
    if (current !== call) return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    if (event.type === 'transcript') {
      addTranscript(String(event.speaker), String(event.text));
    } else if (event.type === 'latency') {
      addLatency(event);
    } else if (event.type === 'ended' || event.type === 'hangup') {
      finish(call, `Call ended: ${describeReason(event.reason)}.`);
    }
  }

  function onConnectionState(call) {
    if (current !== call) return;
    const state = call.pc.connectionState;
    if (state === 'connected') {
      setStatus('Connected. Speak now; the agent is listening.');
    } else if (state === 'disconnected') {
      setStatus('The connection was interrupted; trying to recover…', true);
    } else if (state === 'failed') {
      finish(
        call,
        'The connection failed: ICE found no working network path to the server ' +
          '(a firewall, or a network that needs a TURN server).',
        true,
      );
    }
  }

  // STUN/TURN servers configured on the server; none (host candidates only) if the
  // route is unavailable, which still works on one machine or a LAN.
  async function loadIceServers() {
    try {
      const response = await fetch('/webrtc/config', { headers: authHeaders(), cache: 'no-store' });
      if (!response.ok) return [];
      const body = await response.json();
      return Array.isArray(body.iceServers) ? body.iceServers : [];
    } catch (error) {
      return [];
    }
  }

  async function startCall() {
    if (current) return;
    const call = { pc: null, stream: null, meter: null, callId: null, events: null, dtmf: null };
    current = call;
    setInCall(true);
    ui.transcript.replaceChildren();
    ui.latency.replaceChildren();

    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      finish(
        call,
        'This page cannot use the microphone here: open it over https, or as ' +
          'http://127.0.0.1 or http://localhost on this machine.',
        true,
      );
      return;
    }
    setStatus('Asking for the microphone…');
    try {
      call.stream = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() });
    } catch (error) {
      const name = error && error.name;
      let text;
      if (name === 'NotAllowedError' || name === 'SecurityError') {
        text =
          'Microphone access was denied. Allow the microphone for this page ' +
          "(the icon in the address bar) and press Call again.";
      } else if (name === 'NotFoundError') {
        text = 'No microphone was found. Connect one and press Call again.';
      } else {
        text = `The microphone could not be opened: ${(error && error.message) || name}.`;
      }
      finish(call, text, true);
      return;
    }
    if (current !== call) return;
    startMeter(call, call.stream);

    const pc = new RTCPeerConnection({ iceServers: await loadIceServers() });
    call.pc = pc;
    for (const track of call.stream.getAudioTracks()) pc.addTrack(track, call.stream);
    pc.addEventListener('track', (event) => {
      ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
    });
    pc.addEventListener('connectionstatechange', () => onConnectionState(call));
    call.events = pc.createDataChannel('events');
    call.events.addEventListener('message', (message) => onEvent(call, message));
    call.dtmf = pc.createDataChannel('dtmf');

    setStatus('Connecting…');
    let response;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      if (current !== call) return;
      response = await fetch('webrtc/offer', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...authHeaders() },
        body: JSON.stringify(offerBody(pc.localDescription.sdp)),
      });
    } catch (error) {
      finish(call, `Could not reach the server: ${error.message}.`, true);
      return;
    }
    if (current !== call) return;
    if (!response.ok) {
      const message = await serverMessage(response);
      let text = `The server refused the call (HTTP ${response.status}): ${message}`;
      if (!/[.!?]$/.test(text)) text += '.';
      if (response.status === 401) {
        ui.tokenBox.open = true;
        text += ' Enter the access token below and press Call again.';
      }
      finish(call, text, true);
      return;
    }
    try {
      const answer = await response.json();
      call.callId = answer.call_id;
      if (current !== call) {
        hangUpOnServer(call.callId);
        return;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    } catch (error) {
      hangUpOnServer(call.callId);
      finish(call, `The server's answer could not be used: ${error.message}.`, true);
      return;
    }
    setStatus('Answered; connecting the audio…');
  }

  function hangUpOnServer(callId) {
    if (!callId) return;
    // keepalive lets the request finish even while the page is being closed.
    fetch(`webrtc/calls/${encodeURIComponent(callId)}`, {
      method: 'DELETE',
      headers: authHeaders(),
      keepalive: true,
    }).catch(() => {});
  }

  // Tear the call down locally (once) and show why it ended.
  function finish(call, text, isError = false) {
    if (current !== call) return;
    current = null;
    if (call.pc) call.pc.close();
    if (call.stream) for (const track of call.stream.getTracks()) track.stop();
    if (call.meter) call.meter.close().catch(() => {});
    ui.remote.srcObject = null;
    ui.level.style.width = '0';
    setInCall(false);
    setStatus(text, isError);
  }

  function hangUp() {
    const call = current;
    if (!call) return;
    hangUpOnServer(call.callId);
    finish(call, 'Call ended: you hung up.');
  }

  function sendDigit(digit) {
    const call = current;
    if (!call || !call.dtmf || call.dtmf.readyState !== 'open') return;
    call.dtmf.send(digit);
  }

  ui.call.addEventListener('click', () => {
    startCall().catch((error) => {
      if (current) finish(current, `The call failed: ${error.message}.`, true);
    });
  });
  ui.hangup.addEventListener('click', hangUp);
  // Enter in the token field starts the call instead of reloading the page.
  el('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    ui.call.click();
  });
  ui.keypad.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-digit]');
    if (button) sendDigit(button.dataset.digit);
  });
  document.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement) return;
    if (/^[0-9*#]$/.test(event.key)) sendDigit(event.key);
  });
  window.addEventListener('pagehide', () => {
    if (current) hangUpOnServer(current.callId);
  });
  window.addEventListener('hashchange', takeTokenFromAddress);
  takeTokenFromAddress();
  // ?headset=1 ticks the box, for bookmarks and for automated callers.
  if (/^(1|true|yes|on)$/i.test(new URLSearchParams(window.location.search).get('headset') || '')) {
    ui.headset.checked = true;
  }
})();
