// ReleaseRadar account page: lists the signed-in user's API keys and rotates or
// reveals them. A raw key lives only in the open key dialog's DOM node; closing
// the dialog empties and removes that node. Nothing is written to Web Storage.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);

  const MSG = {
    offline: 'Can’t reach the ReleaseRadar server. Check your connection, then try again.',
    expired: 'Your session has expired. Paste a new token to sign in.',
    noActive: 'You have no active key to rotate. Subscribe to a plan to get one.',
    revealed: 'That key was already revealed, so it can’t be shown again. Rotate the key to get a new one.',
    busy: 'Too many requests. Wait a moment, then try again.',
    garbled: 'The server sent an answer this page doesn’t understand. Reload the page and try again.',
    server: (status) => `The server had a problem (HTTP ${status}). Try again in a moment.`,
    failed: (status) => `The request failed (HTTP ${status}).`,
  };

  // ApiError is a failed call: status 0 when the server could not be reached,
  // -1 when its answer had an unexpected shape.
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.detail = detail || '';
    }
  }

  // api calls one of the server's JSON routes with the session cookie and returns
  // the decoded body (null when empty). Problem documents become ApiErrors.
  async function api(method, path) {
    let res;
    try {
      res = await fetch(path, {
        method,
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'application/json' },
      });
    } catch (_) {
      throw new ApiError(0);
    }
    let body = null;
    try {
      const text = await res.text();
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const detail = body && typeof body.detail === 'string' ? body.detail : '';
      throw new ApiError(res.status, detail);
    }
    return body;
  }

  // describe turns a failure into a sentence for people; never raw JSON.
  function describe(err, action) {
    if (!(err instanceof ApiError) || err.status === -1) return MSG.garbled;
    const s = err.status;
    if (s === 0) return MSG.offline;
    if (s === 401) return MSG.expired;
    if (action === 'rotate' && (s === 404 || s === 409)) return MSG.noActive;
    if (action === 'reveal' && (s === 404 || s === 410)) return MSG.revealed;
    if (s === 429) return MSG.busy;
    if (s >= 500) return MSG.server(s);
    if (err.detail) return /[.!?]$/.test(err.detail) ? err.detail : err.detail + '.';
    return MSG.failed(s);
  }

  // el builds an element; children are nodes or strings (always text, never HTML).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c != null) node.append(c);
    }
    return node;
  }

  const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  // toDate parses an RFC 3339 time; zero and missing times give null.
  function toDate(s) {
    if (typeof s !== 'string' || s === '' || s.startsWith('0001-')) return null;
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  const fmtDate = (s, fmt, none) => {
    const d = toDate(s);
    return d ? fmt.format(d) : none;
  };
  const fmtNum = (n) => Number(n || 0).toLocaleString();
  const planName = (p) => (p ? p.charAt(0).toUpperCase() + p.slice(1) : 'No plan');
  const maskOf = (k) => (typeof k.masked === 'string' && k.masked ? k.masked : '****…' + (k.last4 || ''));

  // resetDate is when the key's 30-day quota cycle ends.
  function resetDate(k) {
    const d = toDate(k.cycle_resets_at);
    if (d) return d;
    const start = toDate(k.cycle_start);
    return start ? new Date(start.getTime() + 30 * 24 * 3600 * 1000) : null;
  }

  // ---- notices -------------------------------------------------------------

  const notice = $('notice');
  const noticeText = $('notice-text');
  const noticeRetry = $('notice-retry');
  const status = $('status');
  let retry = null;

  function showNotice(text, retryFn) {
    noticeText.textContent = text;
    retry = retryFn || null;
    noticeRetry.hidden = !retry;
    notice.hidden = false;
  }
  function clearNotice() {
    notice.hidden = true;
    noticeText.textContent = '';
    retry = null;
  }
  noticeRetry.addEventListener('click', () => {
    const fn = retry;
    clearNotice();
    if (fn) fn();
  });
  const announce = (text) => { status.textContent = text; };

  // showSignIn swaps the page back to the sign-in form, e.g. when the token expired.
  function showSignIn(message) {
    for (const id of ['keys', 'reveal-banner']) {
      const n = $(id);
      if (n) n.hidden = true;
    }
    const account = document.querySelector('.account');
    if (account) account.hidden = true;
    clearNotice();
    const msg = $('signin-message');
    msg.textContent = message;
    msg.hidden = !message;
    $('signin').hidden = false;
    $('token').focus();
  }

  // fail reports a failed call. An expired session goes back to the sign-in form.
  function fail(err, action) {
    if (err instanceof ApiError && err.status === 401) {
      showSignIn(MSG.expired);
      return;
    }
    showNotice(describe(err, action), action === 'load' ? loadKeys : null);
  }

  // ---- modal dialogs ---------------------------------------------------------

  const FOCUSABLE = 'button:not([disabled]), [href], input:not([disabled]), [tabindex]:not([tabindex="-1"])';
  const openers = new WeakMap();
  const cleanups = new WeakMap();

  function focusables(dlg) {
    return Array.from(dlg.querySelectorAll(FOCUSABLE)).filter((n) => !n.hidden && n.offsetParent !== null);
  }

  function openModal(dlg, opener, first) {
    openers.set(dlg, opener || document.activeElement);
    dlg.showModal();
    (first || focusables(dlg)[0] || dlg).focus();
  }

  // closeModal closes dlg; its close handler cleans up and returns focus unless
  // keepFocus is set (another dialog is about to open).
  function closeModal(dlg, keepFocus) {
    if (keepFocus) openers.delete(dlg);
    if (dlg.open) dlg.close();
    const cleanup = cleanups.get(dlg);
    if (cleanup) cleanup(); // at once, not when the close event comes
  }

  // focusBack returns focus to where a dialog was opened from, or, when that
  // control is gone (the list was redrawn), to the list.
  function focusBack(opener) {
    if (opener && opener.isConnected && !opener.hidden && opener.offsetParent !== null) {
      opener.focus();
      return;
    }
    const rotate = document.querySelector('.key .rotate');
    (rotate || $('keys-title') || $('page-title')).focus();
  }

  function setupModal(dlg, onClose) {
    if (onClose) cleanups.set(dlg, onClose);
    dlg.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        closeModal(dlg);
        return;
      }
      if (e.key !== 'Tab') return;
      const items = focusables(dlg);
      if (items.length === 0) {
        e.preventDefault();
        return;
      }
      const first = items[0];
      const last = items[items.length - 1];
      if (e.shiftKey && (document.activeElement === first || !dlg.contains(document.activeElement))) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && (document.activeElement === last || !dlg.contains(document.activeElement))) {
        e.preventDefault();
        first.focus();
      }
    });
    // The browser's own Escape handling closes the dialog too; cleanup is in one place.
    dlg.addEventListener('close', () => {
      if (onClose) onClose();
      const opener = openers.get(dlg);
      if (openers.has(dlg)) {
        openers.delete(dlg);
        focusBack(opener);
      }
    });
    for (const b of dlg.querySelectorAll('[data-close]')) {
      b.addEventListener('click', () => closeModal(dlg));
    }
  }

  // ---- the raw key dialog ----------------------------------------------------

  const secretDialog = $('secret-dialog');
  const secretSlot = $('secret-slot');
  const copyStatus = $('copy-status');
  const copyButton = $('copy-button');

  // wipeSecret empties and removes every node that held the raw key.
  function wipeSecret() {
    const sel = window.getSelection();
    if (sel) sel.removeAllRanges();
    for (const code of secretSlot.querySelectorAll('code')) {
      code.textContent = '';
      code.remove();
    }
    secretSlot.replaceChildren();
    copyStatus.textContent = '';
  }

  function showSecret(raw, title, opener) {
    wipeSecret();
    $('secret-title').textContent = title;
    secretSlot.append(el('code', { id: 'secret-key', text: raw }));
    openModal(secretDialog, opener, copyButton);
  }

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  copyButton.addEventListener('click', async () => {
    const code = secretSlot.querySelector('code');
    if (!code) return;
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
      await navigator.clipboard.writeText(code.textContent);
      copyStatus.textContent = 'Copied to the clipboard.';
    } catch (_) {
      // Fallback: select the key so that the user (or execCommand) can copy it.
      selectText(code);
      let copied = false;
      try {
        copied = document.execCommand('copy');
      } catch (_) {
        copied = false;
      }
      copyStatus.textContent = copied
        ? 'Copied to the clipboard.'
        : 'The key is selected: press Ctrl+C (⌘C on a Mac) to copy it.';
    }
  });

  setupModal(secretDialog, wipeSecret);
  window.addEventListener('pagehide', wipeSecret);

  // Everything below needs a session.
  if (document.body.dataset.signedIn !== 'true') {
    const token = $('token');
    if (token && !$('signin').hidden) token.focus();
    return;
  }

  // ---- the confirmation dialog -----------------------------------------------

  const confirmDialog = $('confirm-dialog');
  const confirmButton = $('confirm-rotate');
  setupModal(confirmDialog);

  function rawKeyOf(body) {
    return body && typeof body.key === 'string' && body.key !== '' ? body.key : '';
  }

  function askRotate(k, button) {
    $('confirm-mask').textContent = maskOf(k);
    openModal(confirmDialog, button, confirmDialog.querySelector('[data-close]'));
  }

  confirmButton.addEventListener('click', async () => {
    const opener = openers.get(confirmDialog);
    confirmButton.disabled = true;
    confirmButton.textContent = 'Rotating…';
    try {
      const raw = rawKeyOf(await api('POST', '/keys/rotate'));
      if (!raw) throw new ApiError(-1);
      closeModal(confirmDialog, true);
      showSecret(raw, 'Your new API key', opener);
      announce('Key rotated. The old key no longer works.');
      loadKeys();
    } catch (err) {
      closeModal(confirmDialog);
      fail(err, 'rotate');
    } finally {
      confirmButton.disabled = false;
      confirmButton.textContent = 'Rotate key';
    }
  });

  // ---- the reveal banner -----------------------------------------------------

  const banner = $('reveal-banner');
  const revealButton = $('reveal-button');
  let revealed = false; // the banner opens the dialog once per page

  revealButton.addEventListener('click', async () => {
    revealButton.disabled = true;
    try {
      const raw = rawKeyOf(await api('POST', '/keys/reveal'));
      if (!raw) throw new ApiError(-1);
      revealed = true;
      banner.hidden = true;
      showSecret(raw, 'Your API key', null);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
        revealed = true;
        banner.hidden = true;
      }
      fail(err, 'reveal');
    } finally {
      revealButton.disabled = false;
    }
  });

  // ---- the key list ----------------------------------------------------------

  const keysSection = $('keys');
  const list = $('key-list');
  let drawn = 0;

  function keyCard(k) {
    const n = ++drawn;
    const mask = maskOf(k);
    const used = Number(k.calls_used || 0);
    const limit = Number(k.monthly_call_limit || 0);
    const rotate = el('button', { class: 'btn rotate', type: 'button', 'aria-describedby': `mask-${n}` }, 'Rotate key');
    rotate.addEventListener('click', () => askRotate(k, rotate));

    const usage = el('div', { class: 'usage' });
    const resets = resetDate(k);
    if (limit > 0) {
      const pct = Math.min(100, Math.round((used / limit) * 100));
      const fill = el('div', { class: 'bar-fill' + (pct >= 100 ? ' is-full' : pct >= 80 ? ' is-high' : '') });
      fill.style.width = pct + '%';
      usage.append(
        el('div', { class: 'usage-head' },
          el('span', { id: `usage-${n}`, text: 'Calls this cycle' }),
          el('span', { class: 'usage-count', text: `${fmtNum(used)} of ${fmtNum(limit)}` })),
        el('div', {
          class: 'bar', role: 'progressbar', 'aria-labelledby': `usage-${n}`,
          'aria-valuemin': '0', 'aria-valuemax': String(limit), 'aria-valuenow': String(Math.min(used, limit)),
          'aria-valuetext': `${fmtNum(used)} of ${fmtNum(limit)} calls used (${pct}%)`,
        }, fill),
        el('p', {
          class: 'usage-foot',
          text: `${fmtNum(Math.max(0, limit - used))} calls left` + (resets ? ` · resets ${dateFmt.format(resets)}` : ''),
        }));
    } else {
      usage.append(
        el('div', { class: 'usage-head' },
          el('span', { text: 'Calls this cycle' }),
          el('span', { class: 'usage-count', text: fmtNum(used) })),
        el('p', { class: 'usage-foot', text: 'No monthly limit' }));
    }

    return el('li', { class: 'key', 'data-key-id': String(k.id || '') },
      el('div', { class: 'key-head' },
        el('div', { class: 'key-id' },
          el('code', { class: 'key-mask', id: `mask-${n}`, text: mask }),
          el('span', { class: 'badge badge-plan', text: planName(k.plan) }),
          el('span', { class: 'badge badge-active', text: 'Active' })),
        rotate),
      el('dl', { class: 'key-meta' },
        el('div', null, el('dt', { text: 'Created' }), el('dd', { text: fmtDate(k.created_at, dateTimeFmt, '—') })),
        el('div', null, el('dt', { text: 'Last used' }), el('dd', { text: fmtDate(k.last_used_at, dateTimeFmt, 'Never') }))),
      usage);
  }

  function revokedItem(k) {
    const when = fmtDate(k.revoked_at, dateFmt, '') || fmtDate(k.created_at, dateFmt, '');
    return el('li', { class: 'revoked-item', 'data-key-id': String(k.id || '') },
      el('span', null, el('code', { text: maskOf(k) }), ` · ${planName(k.plan)}`),
      el('span', { text: when ? `Revoked · ${when}` : 'Revoked' }));
  }

  function render(keys, pendingReveal) {
    const active = keys.filter((k) => k.status === 'active');
    const old = keys.filter((k) => k.status !== 'active');
    list.replaceChildren(...active.map(keyCard));
    list.hidden = active.length === 0;
    $('keys-empty').hidden = active.length > 0;
    $('revoked-list').replaceChildren(...old.map(revokedItem));
    $('revoked-count').textContent = String(old.length);
    $('revoked').hidden = old.length === 0;
    banner.hidden = !(pendingReveal && !revealed);
  }

  async function loadKeys() {
    keysSection.setAttribute('aria-busy', 'true');
    try {
      const body = await api('GET', '/keys');
      // A JSON list, or {"keys": [...] | null, "reveal_pending": bool}.
      let keys = null;
      if (Array.isArray(body)) keys = body;
      else if (body && Array.isArray(body.keys)) keys = body.keys;
      else if (body && body.keys === null) keys = [];
      if (!keys) throw new ApiError(-1);
      render(keys, !Array.isArray(body) && body.reveal_pending === true);
      clearNotice();
    } catch (err) {
      fail(err, 'load');
    } finally {
      keysSection.setAttribute('aria-busy', 'false');
      $('keys-loading').hidden = true;
    }
  }

  loadKeys();
})();
