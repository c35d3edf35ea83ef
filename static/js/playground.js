// Voxfleet playground: live token quote (server-side, the API's own rules), prompt audio
// upload or microphone recording, and synthesis through the REST API with the session.
(function () {
  "use strict";
  const form = document.getElementById("playground");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const apiRoot = form.dataset.apiRoot;
  const fields = ["text", "instruction", "seed", "voice", "prompt", "voice-name", "transcript"];
  let lastQuote = null;
  let recordedBlob = null;

  function setError(field, message) {
    const el = $(field + "-error");
    if (el) el.textContent = message || "";
    const input = field === "prompt" ? $("prompt-audio") : $(field);
    if (input) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }
  function clearErrors() {
    fields.forEach((f) => setError(f, ""));
    $("form-error").textContent = "";
  }

  // --- live quote ---------------------------------------------------------------------
  let quoteTimer = null;
  let quoteSeq = 0;
  async function quote() {
    const seq = ++quoteSeq;
    const params = new URLSearchParams({ text: $("text").value, instruction: $("instruction").value });
    try {
      const res = await fetch(form.dataset.quoteUrl + "?" + params, { credentials: "same-origin" });
      if (!res.ok || seq !== quoteSeq) return;
      const q = await res.json();
      lastQuote = q;
      $("token-count").textContent = q.tokens;
      $("token-count").dataset.tokens = q.tokens;
      $("char-count").textContent = q.chars;
      $("token-breakdown").textContent = q.instruction_tokens
        ? " (" + q.text_tokens + " text + " + q.instruction_tokens + " instruction)"
        : "";
      $("token-count").classList.toggle("over", q.chars > q.text_limit);
      // Only show "empty text" once the user has typed something.
      setError("text", $("text").value.trim() === "" ? "" : q.errors.text || "");
      setError("instruction", q.errors.instruction || "");
      $("language").textContent = q.language_name;
    } catch (e) {
      /* offline: keep the last figure */
    }
  }
  function scheduleQuote() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(quote, 200);
  }
  ["text", "instruction"].forEach((id) => $(id).addEventListener("input", scheduleQuote));
  $("instruction-preset").addEventListener("change", (ev) => {
    $("instruction").value = ev.target.value;
    scheduleQuote();
  });
  quote();

  // --- seed ---------------------------------------------------------------------------
  $("dice").addEventListener("click", () => {
    const buf = new Uint32Array(1);
    crypto.getRandomValues(buf);
    $("seed").value = 1 + (buf[0] % 100000000);
    setError("seed", "");
  });

  // --- voice: upload or record --------------------------------------------------------
  $("voice").addEventListener("change", () => {
    $("new-voice").hidden = $("voice").value !== "__new__";
  });
  $("prompt-audio").addEventListener("change", () => {
    recordedBlob = null;
    const file = $("prompt-audio").files[0];
    if (file) {
      $("prompt-preview").src = URL.createObjectURL(file);
      $("prompt-preview").hidden = false;
    }
  });

  let recorder = null;
  let chunks = [];
  let recordStart = 0;
  $("record").addEventListener("click", async () => {
    if (recorder && recorder.state === "recording") {
      recorder.stop();
      return;
    }
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      setError("prompt", "This browser cannot record audio; upload a file instead.");
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
      recorder.onstop = async () => {
        stream.getTracks().forEach((t) => t.stop());
        $("record").textContent = "● Record";
        $("record").setAttribute("aria-pressed", "false");
        const seconds = (Date.now() - recordStart) / 1000;
        $("record-status").textContent = "Recorded " + seconds.toFixed(1) + " s; converting to WAV…";
        try {
          recordedBlob = await toWav(new Blob(chunks, { type: recorder.mimeType }));
          $("prompt-audio").value = "";
          $("prompt-preview").src = URL.createObjectURL(recordedBlob);
          $("prompt-preview").hidden = false;
          $("record-status").textContent = "Recorded " + seconds.toFixed(1) + " s (3–15 s are accepted).";
        } catch (e) {
          setError("prompt", "Could not read the recording: " + e.message);
        }
      };
      recorder.start();
      recordStart = Date.now();
      $("record").textContent = "■ Stop";
      $("record").setAttribute("aria-pressed", "true");
      $("record-status").innerHTML = '<span class="rec-dot" aria-hidden="true"></span> Recording… speak for 3–15 s.';
    } catch (e) {
      setError("prompt", "Microphone not available: " + e.message);
    }
  });

  // The API takes wav/flac/mp3/ogg; browsers record webm/opus, so decode and write PCM WAV.
  async function toWav(blob) {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    ctx.close();
    const data = audio.getChannelData(0);
    const rate = audio.sampleRate;
    const buffer = new ArrayBuffer(44 + data.length * 2);
    const view = new DataView(buffer);
    const str = (o, s) => [...s].forEach((c, i) => view.setUint8(o + i, c.charCodeAt(0)));
    str(0, "RIFF"); view.setUint32(4, 36 + data.length * 2, true); str(8, "WAVE");
    str(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); str(36, "data"); view.setUint32(40, data.length * 2, true);
    for (let i = 0; i < data.length; i++) {
      const s = Math.max(-1, Math.min(1, data[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  // --- generate -----------------------------------------------------------------------
  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    opts.headers["X-CSRFToken"] = csrf;
    opts.headers["Accept"] = "application/json";
    const res = await fetch(apiRoot + path, opts);
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (!res.ok) {
      const err = new Error((body && body.error && body.error.message) || "Request failed (" + res.status + ").");
      err.status = res.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  // Map an API error onto the field it is about, so it shows next to that field.
  const PARAM_FIELDS = {
    input: "text",
    text: "text",
    instructions: "instruction",
    instruction: "instruction",
    seed: "seed",
    voice: "voice",
    audio: "prompt",
    name: "voice-name",
    transcript: "transcript",
  };
  function showApiError(err, fallbackField) {
    const e = (err.body && err.body.error) || {};
    const code = e.code || "";
    if (e.fields) {
      let shown = false;
      Object.entries(e.fields).forEach(([name, msgs]) => {
        const field = PARAM_FIELDS[name];
        if (field) {
          setError(field, [].concat(msgs).join(" "));
          shown = true;
        }
      });
      if (shown) return;
    }
    let field = PARAM_FIELDS[e.param] || fallbackField || "form";
    if (!e.param) {
      if (code.indexOf("text") >= 0) field = "text";
      else if (code.indexOf("instruction") >= 0) field = "instruction";
      else if (code === "feature_not_in_plan") field = String(e.feature || "").indexOf("language") === 0 ? "text" : "instruction";
      else if (code.indexOf("seed") >= 0) field = "seed";
      else if (code.indexOf("voice") >= 0 && field !== "prompt") field = "voice";
    }
    if (field === "form") $("form-error").textContent = err.message;
    else setError(field, err.message);
  }

  async function createVoice() {
    const file = recordedBlob || $("prompt-audio").files[0];
    if (!file) {
      setError("prompt", "Choose a prompt audio file or record one.");
      return null;
    }
    const fd = new FormData();
    fd.append("name", $("voice-name").value || "Voice " + new Date().toISOString().slice(0, 16).replace("T", " "));
    fd.append("audio", file, recordedBlob ? "recording.wav" : file.name);
    if ($("prompt-text").value) fd.append("transcript", $("prompt-text").value);
    const voice = await api("voices", { method: "POST", body: fd });
    $("own-voices").appendChild(new Option(voice.name, voice.id));
    $("voice").value = String(voice.id);
    $("new-voice").hidden = true;
    return voice.id;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function refreshQuota() {
    try {
      const q = await api("quota");
      $("tokens-left").textContent = q.remaining.toLocaleString("en-US");
      $("tokens-left").dataset.remaining = q.remaining;
    } catch (e) {
      /* keep the old figure */
    }
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const seedRaw = $("seed").value.trim();
    if (seedRaw && !/^\d+$/.test(seedRaw)) {
      setError("seed", "The seed is a whole number from 1 to 100,000,000.");
      return;
    }
    if (seedRaw && (Number(seedRaw) < 1 || Number(seedRaw) > 100000000)) {
      setError("seed", "The seed is a whole number from 1 to 100,000,000.");
      return;
    }
    const button = $("generate");
    button.disabled = true;
    $("status").textContent = "Submitting…";
    $("result").hidden = true;
    try {
      let voiceId = $("voice").value;
      if (voiceId === "__new__") {
        $("status").textContent = "Checking the prompt audio…";
        voiceId = await createVoice().catch((err) => {
          showApiError(err, "prompt");
          return null;
        });
        if (!voiceId) return;
      }
      const payload = { input: $("text").value, voice: voiceId };
      if ($("instruction").value.trim()) payload.instructions = $("instruction").value;
      if (seedRaw) payload.seed = Number(seedRaw);
      let job;
      try {
        job = await api("jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(payload),
        });
      } catch (err) {
        showApiError(err);
        return;
      }
      $("status").textContent = "Queued (" + job.tokens + " tokens reserved)…";
      // Play while it streams in: the jobs API sends a running job's audio as each sentence
      // is synthesized, and the browser plays progressive mp3 as it arrives.
      const audioUrl = job.audio_url || apiRoot + "jobs/" + job.id + "/audio";
      const audio = $("result-audio");
      audio.src = audioUrl + "?format=mp3";
      audio.load();
      audio.play().catch(() => {
        /* autoplay refused: the controls are there */
      });
      $("result").hidden = false;
      $("result").dataset.streaming = "1";
      $("download").removeAttribute("href");
      const started = Date.now();
      while (!["succeeded", "failed", "cancelled"].includes(job.status)) {
        if (Date.now() - started > 120000) throw new Error("Still not finished after 2 minutes; see the dashboard.");
        await sleep(400);
        job = await api("jobs/" + job.id);
        $("status").textContent = job.status === "running" ? "Synthesizing (playing as it streams)…" : "Waiting for a GPU…";
      }
      delete $("result").dataset.streaming;
      if (job.status !== "succeeded") {
        $("result").hidden = true;
        audio.removeAttribute("src");
        const why = (job.error && job.error.message) || "no reason given";
        $("form-error").textContent = "Synthesis " + job.status + ": " + why + " (no tokens charged).";
        $("status").textContent = "";
        return;
      }
      $("download").href = audioUrl;
      $("download").setAttribute("download", "voxfleet-" + job.id + ".wav");
      $("result-meta").textContent =
        "Job " + job.id + " · " + job.tokens + " tokens · seed " + job.seed + (job.node ? " · node " + job.node : "");
      $("result").hidden = false;
      $("result").dataset.tokens = job.tokens;
      $("status").textContent = "Done.";
      if (!seedRaw) $("seed").placeholder = "last: " + job.seed;
      await refreshQuota();
    } catch (err) {
      $("form-error").textContent = err.message;
      $("status").textContent = "";
    } finally {
      button.disabled = false;
    }
  });
})();
