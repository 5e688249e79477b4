// qcall staff pages: actions through the API bridge, live updates, shortcuts, idle timeout.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

(function () {
  const body = document.body;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const liveUrl = body.dataset.live || "";
  const idleS = Number(body.dataset.idleS || 0);
  // Pages whose live part changes with the clock alone (the supervisor's alerts) re-read it.
  const pollS = Number(body.dataset.pollS || 0);
  // Reconnect backoff of the event stream: quick at first, never more than 5 s apart.
  const RECONNECT_MS = [250, 1000, 2000, 5000];
  // Events arriving together cause one refresh.
  const REFRESH_DEBOUNCE_MS = 60;
  // The idle warning shows this long before the server signs the user out.
  const IDLE_WARNING_S = 60;
  // User activity is reported to the server at most this often (it resets the idle timer).
  const PING_EVERY_S = 60;

  let busy = false;
  // Set once the page is being left (a sign-out form, a link): a stream closed by that is no news.
  let leaving = false;
  window.addEventListener("beforeunload", () => {
    leaving = true;
  });
  let refreshTimer = null;
  let refreshing = null;
  let lastActivity = Date.now();
  let lastPing = Date.now();

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function showAlert(message) {
    const box = $("#alert");
    if (!box) return;
    if (message) {
      box.textContent = message;
      box.hidden = false;
    } else {
      box.textContent = "";
      box.hidden = true;
    }
  }

  function announce(message) {
    const status = $("#status");
    if (status) status.textContent = message;
  }

  function signedOut() {
    if (leaving) return;
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign("/login?expired=1&next=" + next);
  }

  // POST a JSON body to an API route through the bridge (session cookie + CSRF token).
  async function post(url, payload) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "Accept": "application/json",
          "X-CSRF-Token": csrf,
        },
        body: JSON.stringify(payload || {}),
      });
    } catch (err) {
      return { ok: false, status: 0, data: null };
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (err) {
        data = null;
      }
    }
    if (response.status === 401) signedOut();
    return { ok: response.ok, status: response.status, data: data };
  }

  function errorText(result) {
    if (result.data && result.data.error) return result.data.error.message;
    return document.documentElement.lang === "en"
      ? "The hub did not answer; please try again."
      : "系统未响应，请重试。";
  }

  function setBusy(state) {
    busy = state;
    body.toggleAttribute("data-busy", state);
    document.querySelectorAll("[data-act], form[data-act-form] button[type=submit]").forEach((b) => {
      if (state) {
        if (!b.disabled) {
          b.disabled = true;
          b.dataset.busyDisabled = "1";
        }
      } else if (b.dataset.busyDisabled) {
        b.disabled = false;
        delete b.dataset.busyDisabled;
      }
    });
  }

  // Run one operation; a second press while it runs is ignored (buttons are disabled too).
  async function run(url, payload, button) {
    if (busy) return null;
    setBusy(true);
    showAlert("");
    try {
      const result = await post(url, payload);
      if (!result.ok) {
        showAlert(errorText(result));
      } else if (button && button.dataset.done) {
        announce(button.dataset.done);
        const shown = button.closest("section, dialog, body").querySelector("[data-done-text]");
        if (shown) shown.textContent = button.dataset.done;
      } else if (button && button.dataset.then === "reload") {
        location.reload();
        return result;
      }
      await refresh();
      return result;
    } finally {
      setBusy(false);
    }
  }

  // ------------------------------------------------------------------ live part of the page

  async function refresh() {
    if (!liveUrl) return;
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const response = await fetch(liveUrl, {
          credentials: "same-origin",
          headers: { "X-Qcall-Background": "1" },
        });
        if (response.status === 401) return signedOut();
        if (response.status === 205) return location.reload();
        if (!response.ok) return;
        const html = await response.text();
        const live = $("#live");
        // Only focus inside the replaced part is carried over (by id), and only if it would
        // be lost: the user may have moved on while the fetch ran.
        const active = document.activeElement;
        const focusedId = active && live.contains(active) ? active.id : "";
        live.innerHTML = html;
        if (busy) setBusy(true);
        tick();
        if (focusedId && (!document.activeElement || document.activeElement === body)) {
          const again = document.getElementById(focusedId);
          if (again && !again.disabled) again.focus();
        }
      } catch (err) {
        $("#offline").hidden = false;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, REFRESH_DEBOUNCE_MS);
  }

  function connect(attempt) {
    if (!liveUrl) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + "/web/events");
    let opened = false;
    ws.onopen = () => {
      opened = true;
      $("#offline").hidden = true;
      body.dataset.live_connected = "1";
    };
    ws.onmessage = (message) => {
      let event = null;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      if (event.type === "snapshot") {
        refresh(); // after a (re)connect: catch up on whatever happened meanwhile
      } else {
        body.dataset.lastSeq = String(event.seq);
        scheduleRefresh();
      }
    };
    ws.onclose = () => {
      if (leaving) return;
      body.dataset.live_connected = "";
      $("#offline").hidden = false;
      // A stream closed because the session ended (signed out elsewhere, expired): the
      // fragment fetch answers 401 and the page goes to the sign-in form.
      refresh();
      const next = opened ? 0 : Math.min(attempt + 1, RECONNECT_MS.length - 1);
      setTimeout(() => connect(next), RECONNECT_MS[next]);
    };
  }

  // ------------------------------------------------------------------ timers

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-since]").forEach((el) => {
      const since = Date.parse(el.dataset.since);
      if (Number.isNaN(since)) return;
      const s = Math.max(0, Math.floor((now - since) / 1000));
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      el.textContent = (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
    });
  }

  // ------------------------------------------------------------------ buttons and dialogs

  function openDialog(id, button) {
    const dialog = document.getElementById(id);
    if (!dialog) return;
    const date = $("input[type=date]", dialog);
    const panel = $(".panel");
    if (date && panel) {
      date.value = panel.dataset.promised || "";
      date.min = panel.dataset.today || "";
    }
    dialog.returnFocusTo = button;
    dialog.showModal();
  }

  function formPayload(form, submitter) {
    const payload = {};
    const data = new FormData(form);
    for (const [name, value] of data.entries()) {
      const field = form.elements.namedItem(name);
      const el = field && !(field instanceof RadioNodeList) ? field : null;
      if (el && el.dataset.optional !== undefined && value === "") continue;
      if (el && el.dataset.type === "int") payload[name] = Number(value);
      else payload[name] = value;
    }
    form.querySelectorAll("input[type=checkbox][data-type=bool]").forEach((box) => {
      payload[box.name] = box.checked;
    });
    if (submitter && submitter.name) {
      payload[submitter.name] =
        submitter.dataset.type === "int" ? Number(submitter.value) : submitter.value;
    }
    // Transfer: "window:2" or "service:social_card", exactly one target.
    if (typeof payload.target === "string") {
      const [kind, value] = payload.target.split(":");
      payload[kind] = kind === "window" ? Number(value) : value;
      delete payload.target;
    }
    return payload;
  }

  function fillResult(form, result) {
    const box = document.getElementById(form.dataset.result);
    if (!box || !result.data) return;
    const select = $("select[name=service]", form);
    const values = Object.assign({}, result.data, {
      service_name: select ? select.options[select.selectedIndex].text : "",
      wait_min: Math.max(1, Math.round((result.data.estimated_wait_s || 0) / 60)),
      issued_at: new Date(result.data.issued_at).toLocaleString(),
    });
    box.querySelectorAll("[data-field]").forEach((el) => {
      el.textContent = String(values[el.dataset.field] ?? "");
    });
    box.querySelectorAll("[data-fill-ticket]").forEach((el) => {
      el.dataset.body = JSON.stringify({ ticket: result.data.id });
    });
    box.querySelectorAll("[data-done-text]").forEach((el) => {
      el.textContent = "";
    });
    box.hidden = false;
    box.focus();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-act]");
    if (button) {
      event.preventDefault();
      if (button.disabled || busy) return;
      if (button.dataset.dialog) return openDialog(button.dataset.dialog, button);
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      const payload = button.dataset.body ? JSON.parse(button.dataset.body) : {};
      run(button.dataset.act, payload, button);
      return;
    }
    const closer = event.target.closest("[data-close]");
    if (closer) closer.closest("dialog").close();
    if (event.target.closest("[data-print]")) window.print();
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.dataset.actForm) return;
    event.preventDefault();
    if (busy) return;
    const asks = event.submitter && event.submitter.dataset.confirm;
    if (asks && !window.confirm(asks)) return;
    const payload = formPayload(form, event.submitter);
    const dialog = form.closest("dialog");
    if (dialog) dialog.close();
    const result = await run(form.dataset.actForm, payload, null);
    if (result && result.ok) {
      if (form.dataset.result) fillResult(form, result);
      if (form.dataset.done) announce(form.dataset.done);
      if (!dialog) form.reset();
      else if (dialog.returnFocusTo) dialog.returnFocusTo.focus();
    }
  });

  document.addEventListener("close", (event) => {
    const dialog = event.target;
    if (dialog.id === "dlg-idle") {
      ping();
      return;
    }
    if (dialog.returnFocusTo && document.contains(dialog.returnFocusTo)) {
      dialog.returnFocusTo.focus();
    }
  }, true);

  // F1–F10 press the button showing that key (only when no dialog is open).
  document.addEventListener("keydown", (event) => {
    if (!body.dataset.shortcuts) return;
    if (!/^F([1-9]|10)$/.test(event.key)) return;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    event.preventDefault();
    if (document.querySelector("dialog[open]")) return;
    const button = document.querySelector(
      '#live [data-key="' + event.key + '"]:not([disabled])'
    );
    if (button) button.click();
  });

  // ------------------------------------------------------------------ idle timeout

  async function ping() {
    lastActivity = Date.now();
    lastPing = Date.now();
    const result = await post("/web/ping", {});
    if (result.status === 401) signedOut();
  }

  function activity() {
    lastActivity = Date.now();
    if ((lastActivity - lastPing) / 1000 > PING_EVERY_S) ping();
  }

  let signingOut = false;

  // Unused too long: end the session on the server too, then show the sign-in page.
  async function idleSignOut() {
    if (signingOut) return;
    signingOut = true;
    try {
      await fetch("/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf },
      });
    } finally {
      signedOut();
    }
  }

  function idleCheck() {
    if (!idleS || !$("#dlg-idle")) return;
    const idle = (Date.now() - lastActivity) / 1000;
    const dialog = $("#dlg-idle");
    if (idle >= idleS) {
      idleSignOut();
    } else if (idle >= idleS - IDLE_WARNING_S && !dialog.open) {
      dialog.showModal();
    }
  }

  ["keydown", "pointerdown"].forEach((kind) =>
    document.addEventListener(kind, activity, { passive: true, capture: true })
  );

  tick();
  setInterval(tick, 1000);
  setInterval(idleCheck, 5000);
  if (pollS) setInterval(refresh, pollS * 1000);
  connect(0);
})();
