// ReleaseRadar account page: the signed-in user's API keys, their plan and usage,
// rotation (with an optional grace period), upgrades through Stripe Checkout and the
// reveal of a key a checkout issued. A raw key lives only in the open key dialog's
// DOM node; closing the dialog empties and removes that node. Nothing is written to
// Web Storage, and nothing is fetched from another origin.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);

  const DAY = 24 * 3600 * 1000;
  const CYCLE_DAYS = 30; // a quota cycle lasts 30 days from the key's cycle_start
  // The plans a key can be bought on, by rank (the API document's Plan), when GET
  // /keys does not list them with their limits.
  const MSG = {
    offline: 'Can’t reach the ReleaseRadar server. Check your connection, then try again.',
    expired: 'Your session has expired. Paste a new token to sign in.',
    noActive: 'You have no active key to rotate. Subscribe to a plan to get one.',
    revealed: 'That key was already revealed, so it can’t be shown again. Rotate the key to get a new one.',
    noCustomer: 'There is no billing account for you yet: Stripe opens one with your first subscription.',
    busy: 'Too many requests. Wait a moment, then try again.',
    garbled: 'The server sent an answer this page doesn’t understand. Reload the page and try again.',
    server: (status) => `The server had a problem (HTTP ${status}). Try again in a moment.`,
    failed: (status) => `The request failed (HTTP ${status}).`,
  };

  // What an expired session interrupted, said on the sign-in form it leads to.
  const EXPIRED_DURING = {
    rotate: 'Your session expired before the key was rotated, so your key was not changed. Sign in again, then rotate it.',
    checkout: 'Your session expired before checkout started, so nothing was bought. Sign in again to upgrade.',
    portal: 'Your session expired before billing opened. Sign in again to manage billing.',
    reveal: 'Your session expired before your new key was shown. It is still waiting for you: sign in again to reveal it.',
  };

  // Sign-in messages (?signin=KEY) that are news rather than a refusal.
  const SIGNIN_INFO = new Set(['out', 'expired']);

  // Why a key was revoked: revoke_reason as the server records it ("rotated",
  // "admin revoke", "billing: cancelled", "billing: payment failed",
  // "billing: no paid plan", "billing: plan changed to team", …),
  // reduced to what the page can explain.
  function reasonOf(k) {
    const r = typeof k.revoke_reason === 'string'
      ? k.revoke_reason.trim().toLowerCase().replace(/^billing:\s*/, '').replace(/[\s-]+/g, '_')
      : '';
    if (r === 'rotated' || r === 'rotation') return 'rotated';
    if (r.startsWith('plan_changed')) return 'plan_changed';
    if (r === 'cancelled' || r === 'canceled' || r.startsWith('subscription_cancel')) return 'cancelled';
    if (r.startsWith('payment_failed') || r === 'unpaid' || r === 'past_due') return 'payment_failed';
    if (r === 'no_paid_plan') return 'ended'; // cancelled, or a payment failed
    if (r === 'admin_grant') return 'replaced_by_operator';
    if (r === 'admin_revoke' || r === 'operator') return 'operator';
    return '';
  }
  const REASONS = {
    rotated: 'replaced by a rotation',
    plan_changed: 'replaced after a plan change',
    cancelled: 'subscription ended',
    payment_failed: 'payment failed',
    ended: 'subscription ended or a payment failed',
    replaced_by_operator: 'replaced by an administrator',
    operator: 'revoked by an administrator',
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
  // the decoded body (null when empty). body, when given, is sent as JSON. Problem
  // documents become ApiErrors.
  async function api(method, path, body) {
    const init = {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0);
    }
    let data = null;
    try {
      const text = await res.text();
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const detail = data && typeof data.detail === 'string' ? data.detail : '';
      throw new ApiError(res.status, detail);
    }
    return data;
  }

  const sentence = (s) => (/[.!?]$/.test(s) ? s : s + '.');

  // describe turns a failure into a sentence for people; never raw JSON.
  function describe(err, action) {
    if (!(err instanceof ApiError) || err.status === -1) return MSG.garbled;
    const s = err.status;
    if (s === 0) return MSG.offline;
    if (s === 401) return MSG.expired;
    if (action === 'rotate' && (s === 404 || s === 409)) return MSG.noActive;
    if (action === 'reveal' && (s === 404 || s === 410)) return MSG.revealed;
    if (action === 'portal' && s === 404) return MSG.noCustomer;
    if (s === 429) return MSG.busy;
    // Billing's 503 says why ("Billing is not configured on this server").
    if ((action === 'checkout' || action === 'portal') && s === 503 && err.detail) return sentence(err.detail);
    if (s >= 500) return MSG.server(s);
    if (err.detail) return sentence(err.detail);
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

  // ---- numbers, times and names ------------------------------------------------

  const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  // Resets and expiries are moments: with the time and the zone they are told in.
  const zonedFmt = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', timeZoneName: 'short',
  });
  // The usage ledger counts calls per UTC day: its days are told as UTC dates.
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
  const dayLongFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', month: 'short', day: 'numeric', timeZone: 'UTC' });
  const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'always' });

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

  // fromNow says how far d is from now: "in 59 minutes", "in 24 hours", "in 20 days".
  function fromNow(d) {
    const s = (d.getTime() - Date.now()) / 1000;
    const a = Math.abs(s);
    if (a < 3570) return relFmt.format(Math.sign(s || 1) * Math.max(1, Math.round(a / 60)), 'minute');
    if (a < 48 * 3600) return relFmt.format(Math.round(s / 3600), 'hour');
    return relFmt.format(Math.round(s / 86400), 'day');
  }

  // forHow says a grace period of seconds: "for 1 hour", "for 24 hours".
  function forHow(seconds) {
    const h = seconds / 3600;
    if (Number.isInteger(h)) return `for ${h} hour${h === 1 ? '' : 's'}`;
    const m = Math.round(seconds / 60);
    return `for ${m} minute${m === 1 ? '' : 's'}`;
  }

  // resetDate is when the key's 30-day quota cycle ends.
  function resetDate(k) {
    const d = toDate(k.cycle_resets_at);
    if (d) return d;
    const start = toDate(k.cycle_start);
    return start ? new Date(start.getTime() + CYCLE_DAYS * DAY) : null;
  }

  // burstOf says a burst limit: "600 calls a minute"; '' when unknown.
  function burstOf(limit, windowSeconds) {
    const n = Number(limit);
    const w = Number(windowSeconds);
    if (!(n > 0) || !(w > 0)) return '';
    const per = { 1: 'a second', 60: 'a minute', 3600: 'an hour', 86400: 'a day' }[w] || `every ${fmtNum(w)} seconds`;
    return `${fmtNum(n)} call${n === 1 ? '' : 's'} ${per}`;
  }

  // utcDay and isoDay convert between "YYYY-MM-DD" and the time of that UTC midnight.
  const utcDay = (s) => Date.parse(s + 'T00:00:00Z');
  const isoDay = (t) => new Date(t).toISOString().slice(0, 10);

  // safeURL returns s as an absolute http(s) URL to send the browser to, or null.
  function safeURL(s) {
    if (typeof s !== 'string') return null;
    try {
      const u = new URL(s, window.location.href);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  let stopped = false; // the session ended: no more requests

  // ---- notices -------------------------------------------------------------

  const notice = $('notice');
  const noticeText = $('notice-text');
  const noticeRetry = $('notice-retry');
  const status = $('status');
  let retry = null;

  // showNotice shows text; kind 'info' is news (a cancelled checkout), anything
  // else a failure, with a Try again button when retryFn is given.
  function showNotice(text, retryFn, kind) {
    notice.className = 'notice ' + (kind === 'info' ? 'notice-info' : 'notice-error');
    notice.setAttribute('role', kind === 'info' ? 'status' : 'alert');
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

  const params = new URLSearchParams(window.location.search);
  const signinMessage = $('signin-message');

  // styleSignInMessage marks the server's sign-in message as news ("You are signed
  // out.") or as a refusal (a bad token or link).
  function styleSignInMessage(kind) {
    signinMessage.className = 'notice ' + (SIGNIN_INFO.has(kind) ? 'notice-info' : 'notice-error');
  }

  // showSignIn swaps the page back to the sign-in form, e.g. when the token expired,
  // saying what happened to what the user was doing.
  function showSignIn(message) {
    for (const id of ['keys', 'reveal-banner', 'checkout-wait', 'quota-alert', 'usage', 'plan', 'quickstart']) {
      const n = $(id);
      if (n) n.hidden = true;
    }
    const account = document.querySelector('.account');
    if (account) account.hidden = true;
    stopped = true;
    clearNotice();
    styleSignInMessage('expired');
    signinMessage.textContent = message;
    signinMessage.hidden = !message;
    $('signin').hidden = false;
    $('token').focus();
  }

  // fail reports a failed call. An expired session goes back to the sign-in form.
  function fail(err, action) {
    if (err instanceof ApiError && err.status === 401) {
      showSignIn(EXPIRED_DURING[action] || MSG.expired);
      return;
    }
    showNotice(describe(err, action), action === 'load' ? loadAll : null);
  }

  // busy marks a button as working on a request, and returns a function that undoes it.
  function busy(button, text) {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = text;
    return () => {
      button.disabled = false;
      button.textContent = label;
    };
  }

  // ---- copying -------------------------------------------------------------

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // copyFrom copies node's text to the clipboard, or selects it for Ctrl+C when the
  // page may not write to the clipboard, and says which in statusNode.
  async function copyFrom(node, statusNode, what) {
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
      await navigator.clipboard.writeText(node.textContent);
      statusNode.textContent = 'Copied to the clipboard.';
    } catch (_) {
      selectText(node);
      let copied = false;
      try {
        copied = document.execCommand('copy');
      } catch (_) {
        copied = false;
      }
      statusNode.textContent = copied
        ? 'Copied to the clipboard.'
        : `The ${what} is selected: press Ctrl+C (⌘C on a Mac) to copy it.`;
    }
  }

  // ---- modal dialogs ---------------------------------------------------------

  const FOCUSABLE = 'button:not([disabled]), [href], input:not([disabled]), [tabindex]:not([tabindex="-1"])';
  const openers = new WeakMap();
  const cleanups = new WeakMap();

  // focusables lists what Tab reaches in dlg: of a group of radio buttons, only the
  // checked one.
  function focusables(dlg) {
    return Array.from(dlg.querySelectorAll(FOCUSABLE)).filter((n) => {
      if (n.hidden || n.offsetParent === null) return false;
      if (n.type !== 'radio') return true;
      const group = Array.from(dlg.querySelectorAll('input[type="radio"]')).filter((r) => r.name === n.name);
      return n === (group.find((r) => r.checked) || group[0]);
    });
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
    if (opener && opener.isConnected && !opener.hidden && opener.offsetParent !== null && opener !== document.body) {
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
  const secretNote = $('secret-note');
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

  // showSecret opens the dialog on a raw key, with note (what happened to the old
  // key, the plan a checkout bought) under the warning.
  function showSecret(raw, title, opener, note) {
    wipeSecret();
    $('secret-title').textContent = title;
    secretNote.textContent = note || '';
    secretNote.hidden = !note;
    secretSlot.append(el('code', { id: 'secret-key', text: raw }));
    openModal(secretDialog, opener, copyButton);
  }

  copyButton.addEventListener('click', () => {
    const code = secretSlot.querySelector('code');
    if (code) copyFrom(code, copyStatus, 'key');
  });

  setupModal(secretDialog, wipeSecret);
  window.addEventListener('pagehide', wipeSecret);

  // Everything below needs a session.
  if (document.body.dataset.signedIn !== 'true') {
    if (!signinMessage.hidden) {
      // The server shows a message by ?signin=KEY, or "expired" for a cookie that
      // no longer verifies.
      styleSignInMessage(params.get('signin') || 'expired');
    }
    const token = $('token');
    if (token && !$('signin').hidden) token.focus();
    resumeSession();
    return;
  }

  // resumeSession reloads the page signed in when Stripe Checkout sent the browser
  // back to it: the session cookie is SameSite=Strict, so that navigation, which
  // another site started, does not carry it and the server drew the page signed
  // out, while a request of the page's own does carry it. The reload is the
  // page's own navigation, which carries it; ?resumed=1 keeps it from looping.
  async function resumeSession() {
    if (!params.has('checkout') || params.has('resumed') || params.has('signin') || !signinMessage.hidden) return;
    let res;
    try {
      res = await fetch('/keys', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (_) {
      return;
    }
    if (!res.ok) return;
    const u = new URL(window.location.href);
    u.searchParams.set('resumed', '1');
    window.location.replace(u.href);
  }

  // What the address says the page was opened for: the return from Stripe Checkout
  // (?checkout=success, or cancel). The address is cleaned at once, so that a
  // reload does not act on it again.
  const checkoutParam = params.get('checkout');
  const fromCheckout = checkoutParam === 'success' || checkoutParam === 'done';
  let awaiting = fromCheckout; // the page reveals the checkout's key itself: no banner
  const checkoutCancelled = ['cancel', 'canceled', 'cancelled'].includes(checkoutParam || '');
  if (checkoutParam !== null || params.has('resumed') || params.has('session_id')) {
    for (const p of ['checkout', 'session_id', 'resumed']) params.delete(p);
    const q = params.toString();
    window.history.replaceState(null, '', window.location.pathname + (q ? '?' + q : '') + window.location.hash);
  }

  // ---- state -----------------------------------------------------------------

  const state = {
    loaded: false,
    keys: [],
    plans: [], // for sale, by rank (GET /keys)
    pending: false, // a key a checkout issued waits for POST /keys/reveal
    usage: null, // GET /keys/usage
    usageFailed: false,
  };

  // The keys by what they are now: working (active), working until expires_at
  // (expiring), and no longer working (revoked, or expiring past expires_at).
  function sorted() {
    const now = Date.now();
    const active = [];
    const expiring = [];
    const old = [];
    for (const k of state.keys) {
      if (k.status === 'active') active.push(k);
      else if (k.status === 'expiring' && (toDate(k.expires_at) || Infinity) > now) expiring.push(k);
      else old.push(k);
    }
    return { active, expiring, old, current: active[0] || expiring[0] || null };
  }

  // planInfo returns what is known of a plan: its name, and when GET /keys says,
  // monthly_call_limit and its burst limit.
  function planInfo(name) {
    return state.plans.find((p) => p.name === name) || { name };
  }

  // higherPlans are the plans above the current one, or every plan without one.
  function higherPlans(current) {
    if (!current) return state.plans;
    const i = state.plans.findIndex((p) => p.name === current.plan);
    return i < 0 ? [] : state.plans.slice(i + 1);
  }

  // planSummary says what a plan gives: "100,000 calls per 30-day cycle, up to 3,000 calls a minute".
  function planSummary(p) {
    const parts = [];
    if (Number(p.monthly_call_limit) > 0) parts.push(`${fmtNum(p.monthly_call_limit)} calls per ${CYCLE_DAYS}-day cycle`);
    const burst = burstOf(p.burst_limit, p.burst_window_seconds);
    if (burst) parts.push(`up to ${burst}`);
    return parts.join(', ');
  }

  // ---- the confirmation dialog -----------------------------------------------

  const confirmDialog = $('confirm-dialog');
  const confirmButton = $('confirm-rotate');
  const confirmEffect = $('confirm-effect');
  setupModal(confirmDialog);
  let rotating = null; // the key the open confirmation would rotate

  function rawKeyOf(body) {
    return body && typeof body.key === 'string' && body.key !== '' ? body.key : '';
  }

  // grace is the confirmation's choice of how long the old key keeps working, in seconds.
  function grace() {
    const c = confirmDialog.querySelector('input[name="grace"]:checked');
    const n = c ? Number(c.value) : 0;
    return Number.isInteger(n) && n > 0 ? n : 0;
  }

  function sayEffect() {
    const g = grace();
    confirmEffect.textContent = g === 0
      ? 'The old key stops working at once: anything that still uses it gets 403 until you give it the new key.'
      : `The old key keeps working ${forHow(g)}, until about ${zonedFmt.format(new Date(Date.now() + g * 1000))}, ` +
        'so you can deploy the new key first. Both keys spend the same monthly quota.';
  }
  for (const r of confirmDialog.querySelectorAll('input[name="grace"]')) r.addEventListener('change', sayEffect);

  function askRotate(k, button) {
    rotating = k;
    $('confirm-mask').textContent = maskOf(k);
    const none = confirmDialog.querySelector('input[name="grace"][value="0"]');
    if (none) none.checked = true;
    sayEffect();
    openModal(confirmDialog, button, confirmDialog.querySelector('[data-close]'));
  }

  confirmButton.addEventListener('click', async () => {
    const opener = openers.get(confirmDialog);
    const old = rotating;
    const g = grace();
    const done = busy(confirmButton, 'Rotating…');
    try {
      const raw = rawKeyOf(await api('POST', '/keys/rotate', { grace_seconds: g }));
      if (!raw) throw new ApiError(-1);
      closeModal(confirmDialog, true);
      const mask = old ? maskOf(old) : 'Your old key';
      showSecret(raw, 'Your new API key', opener, g > 0
        ? `${old ? 'Your old key ' + mask : 'Your old key'} keeps working ${forHow(g)}, so you can deploy this one first.`
        : `${old ? 'Your old key ' + mask : 'Your old key'} has stopped working.`);
      announce(g > 0 ? `Key rotated. The old key keeps working ${forHow(g)}.` : 'Key rotated. The old key no longer works.');
      loadKeys();
    } catch (err) {
      closeModal(confirmDialog);
      fail(err, 'rotate');
    } finally {
      done();
    }
  });

  // ---- the reveal banner and the return from Checkout -------------------------

  const banner = $('reveal-banner');
  const revealButton = $('reveal-button');
  let revealed = false; // the banner opens the dialog once per page

  async function reveal(opener) {
    revealButton.disabled = true;
    try {
      const body = await api('POST', '/keys/reveal');
      const raw = rawKeyOf(body);
      if (!raw) throw new ApiError(-1);
      revealed = true;
      banner.hidden = true;
      let note = '';
      if (typeof body.plan === 'string' && body.plan) {
        const limit = Number(body.monthly_call_limit || 0);
        note = `Your ${planName(body.plan)} plan is active` +
          (limit > 0 ? `: ${fmtNum(limit)} calls per ${CYCLE_DAYS}-day cycle.` : '.');
      }
      showSecret(raw, 'Your new API key', opener, note);
      announce('Your new API key is shown.');
      loadKeys();
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
        revealed = true;
        banner.hidden = true;
      }
      fail(err, 'reveal');
    } finally {
      revealButton.disabled = false;
    }
  }
  revealButton.addEventListener('click', () => reveal(revealButton));

  const waitBox = $('checkout-wait');
  const waitText = $('checkout-wait-text');
  const waitRetry = $('checkout-wait-retry');

  // awaitCheckout waits for Stripe's webhook after a paid checkout: it polls GET
  // /keys until a key waits to be revealed, then reveals it, once.
  async function awaitCheckout() {
    waitBox.hidden = false;
    waitBox.classList.remove('is-stuck');
    waitRetry.hidden = true;
    awaiting = true;
    waitText.textContent = 'Waiting for Stripe to confirm your payment. Your new key appears here in a moment.';
    const deadline = Date.now() + 3 * 60 * 1000;
    let delay = 1000;
    for (;;) {
      if (stopped) return;
      if (state.pending && !revealed) {
        waitBox.hidden = true;
        awaiting = false;
        await reveal(null);
        return;
      }
      if (Date.now() > deadline) break;
      await sleep(delay);
      delay = Math.min(delay * 1.5, 5000);
      await loadKeys();
    }
    waitBox.classList.add('is-stuck');
    waitText.textContent = 'Stripe has not confirmed the payment yet. That can take a few minutes: check again, ' +
      'or come back later. Your key waits for you on this page.';
    waitRetry.hidden = false;
    awaiting = false;
    render();
  }
  waitRetry.addEventListener('click', () => {
    loadKeys().then(awaitCheckout);
  });

  // ---- billing -----------------------------------------------------------------

  // goTo sends the browser to the URL of a Stripe session the server answered.
  function goTo(body) {
    const url = safeURL(body && body.url);
    if (!url) throw new ApiError(-1);
    announce('Opening Stripe…');
    window.location.assign(url);
  }

  async function checkout(plan, button) {
    const done = busy(button, 'Opening checkout…');
    try {
      goTo(await api('POST', '/billing/checkout', { plan }));
    } catch (err) {
      fail(err, 'checkout');
    } finally {
      done();
    }
  }

  const portalButton = $('portal-button');
  portalButton.addEventListener('click', async () => {
    const done = busy(portalButton, 'Opening billing…');
    try {
      goTo(await api('POST', '/billing/portal'));
    } catch (err) {
      fail(err, 'portal');
    } finally {
      done();
    }
  });

  // offerButton is "Upgrade to Team" (or "Subscribe to Pro" without a plan).
  function offerButton(p, current) {
    const b = el('button', { class: 'btn btn-primary', type: 'button', 'data-plan': p.name },
      `${current ? 'Upgrade' : 'Subscribe'} to ${planName(p.name)}`);
    b.addEventListener('click', () => checkout(p.name, b));
    return b;
  }

  // ---- the key list ----------------------------------------------------------

  const keysSection = $('keys');
  const list = $('key-list');
  let drawn = 0;

  // expiresText says when an expiring key stops working.
  function expiresText(d) {
    if (!d) return 'Stops working soon: replace it with your new key.';
    if (d.getTime() <= Date.now()) return `Stopped working at ${zonedFmt.format(d)}.`;
    return `Expires ${fromNow(d)}, at ${zonedFmt.format(d)}. Replace it with your new key before then.`;
  }

  function keyCard(k) {
    const n = ++drawn;
    const expiring = k.status === 'expiring';
    let action = null;
    if (!expiring) {
      action = el('button', { class: 'btn rotate', type: 'button', 'aria-describedby': `mask-${n}` }, 'Rotate key');
      action.addEventListener('click', () => askRotate(k, action));
    }
    const card = el('li', { class: 'key' + (expiring ? ' is-expiring' : ''), 'data-key-id': String(k.id || '') },
      el('div', { class: 'key-head' },
        el('div', { class: 'key-id' },
          el('code', { class: 'key-mask', id: `mask-${n}`, text: maskOf(k) }),
          el('span', { class: 'badge badge-plan', text: planName(k.plan) }),
          expiring
            ? el('span', { class: 'badge badge-expiring', text: 'Expiring' })
            : el('span', { class: 'badge badge-active', text: 'Active' })),
        action),
      el('dl', { class: 'key-meta' },
        el('div', null, el('dt', { text: 'Created' }), el('dd', { text: fmtDate(k.created_at, dateTimeFmt, '—') })),
        el('div', null, el('dt', { text: 'Last used' }), el('dd', { text: fmtDate(k.last_used_at, dateTimeFmt, 'Not used yet') }))));
    if (expiring) {
      card.append(el('p', { class: 'expires', 'data-expires': String(k.expires_at || '') }, expiresText(toDate(k.expires_at))));
    }
    return card;
  }

  function oldItem(k) {
    // A key a rotation let expire carries expires_at.
    const expired = toDate(k.expires_at) !== null;
    const when = expired ? fmtDate(k.expires_at, dateFmt, '') : fmtDate(k.revoked_at, dateFmt, '');
    const why = REASONS[reasonOf(k)] || (expired ? REASONS.rotated : '');
    const what = (expired ? 'Expired' : 'Revoked') + (when ? ` ${when}` : '') + (why ? ` · ${why}` : '');
    return el('li', { class: 'revoked-item', 'data-key-id': String(k.id || '') },
      el('span', null, el('code', { text: maskOf(k) }), ` · ${planName(k.plan)}`),
      el('span', { text: what }));
  }

  // renderEmpty says why there is no working key: never had one, or what happened
  // to the last one and what to do.
  function renderEmpty(current, old) {
    const box = $('keys-empty');
    box.hidden = current !== null;
    if (current) return;
    const names = state.plans.map((p) => planName(p.name)).join(' or ');
    const last = old[0];
    if (!last) {
      $('keys-empty-title').textContent = 'No API key yet';
      $('keys-empty-text').textContent = state.pending
        ? 'Your subscription issued a key: reveal it above.'
        : names
          ? `You have no plan yet, so there is no key to show. Subscribe to ${names} below and your key appears here.`
          : 'You have no plan yet, so there is no key to show. No plan is for sale here: ask ReleaseRadar for one.';
      return;
    }
    const mask = maskOf(last);
    const on = fmtDate(last.revoked_at || last.expires_at, dateFmt, '');
    const at = on ? ` on ${on}` : '';
    $('keys-empty-title').textContent = 'Your API key no longer works';
    const forbidden = 'Calls with it get 403.';
    let text;
    switch (reasonOf(last)) {
      case 'cancelled':
        text = `Your subscription ended, so your key ${mask} was revoked${at}. ${forbidden} Subscribe again below to get a new key.`;
        break;
      case 'payment_failed':
        text = `A payment failed, so your key ${mask} was revoked${at}. ${forbidden} Update your payment method in Manage billing: ` +
          'a new key appears here once the payment goes through.';
        break;
      case 'ended':
        text = `Your subscription ended or a payment failed, so your key ${mask} was revoked${at}. ${forbidden} ` +
          'Open Manage billing to see which and to update your payment method, or subscribe again below: a new key appears here once Stripe confirms the payment.';
        break;
      case 'operator':
      case 'replaced_by_operator':
        text = `An administrator revoked your key ${mask}${at}. ${forbidden} If you did not ask for this, contact ReleaseRadar support; ` +
          'to get a new key, subscribe below.';
        break;
      default:
        text = `Your key ${mask} was revoked${at}, and no key works for this account now. ${forbidden} ` +
          'If your subscription ended or a payment failed, subscribe again below or open Manage billing; otherwise contact ReleaseRadar support.';
    }
    $('keys-empty-text').textContent = state.pending ? `${text} A new key waits for you: reveal it above.` : text;
  }

  // ---- the near-limit alert --------------------------------------------------

  function renderAlert(k) {
    const box = $('quota-alert');
    const limit = k ? Number(k.monthly_call_limit || 0) : 0;
    const used = k ? Number(k.calls_used || 0) : 0;
    if (!k || limit <= 0 || used < 0.8 * limit) {
      box.hidden = true;
      return;
    }
    const left = Math.max(0, limit - used);
    const pct = Math.min(100, Math.floor((used / limit) * 100));
    const resets = resetDate(k);
    const until = resets ? `${zonedFmt.format(resets)} (${fromNow(resets)})` : `the end of the ${CYCLE_DAYS}-day cycle`;
    let title;
    let text;
    if (left === 0) {
      title = 'You have used all of this cycle’s calls';
      text = `All ${fmtNum(limit)} calls of this ${CYCLE_DAYS}-day cycle are used. Calls with your key now get ` +
        `HTTP 429 (“Monthly API quota exceeded”) until the quota resets on ${until}.`;
    } else if (used >= 0.95 * limit) {
      title = `Almost out of calls: ${pct}% used`;
      text = `Only ${fmtNum(left)} of ${fmtNum(limit)} calls are left until the quota resets on ${until}. ` +
        'Once they are spent, calls get HTTP 429 until then.';
    } else {
      title = `${pct}% of this cycle’s calls used`;
      text = `${fmtNum(left)} of ${fmtNum(limit)} calls are left until the quota resets on ${until}.`;
    }
    const offers = higherPlans(k);
    if (offers.length > 0) {
      const p = offers[0];
      const gives = planSummary(p);
      text += ` ${planName(p.name)} ${gives ? 'gives ' + gives : 'has a higher limit'}.`;
    }
    $('quota-alert-title').textContent = title;
    $('quota-alert-text').textContent = text;
    $('quota-alert-actions').replaceChildren(...offers.map((p) => offerButton(p, k)));
    box.classList.toggle('is-full', left === 0);
    box.dataset.level = left === 0 ? '100' : used >= 0.95 * limit ? '95' : '80';
    box.hidden = false;
  }

  // ---- usage -------------------------------------------------------------------

  function meter(k) {
    const used = Number(k.calls_used || 0);
    const limit = Number(k.monthly_call_limit || 0);
    const resets = resetDate(k);
    const start = toDate(k.cycle_start);
    const nodes = [];
    if (limit > 0) {
      const ratio = used / limit;
      const pct = Math.min(100, Math.floor(ratio * 100));
      const fill = el('div', {
        class: 'bar-fill' + (used > 0 ? ' is-used' : '') + (ratio >= 1 ? ' is-full' : ratio >= 0.8 ? ' is-high' : ''),
      });
      fill.style.width = Math.min(100, ratio * 100) + '%';
      nodes.push(
        el('div', { class: 'usage-head' },
          el('span', { id: 'usage-label', text: 'Calls this cycle' }),
          el('span', { class: 'usage-count', text: `${fmtNum(used)} of ${fmtNum(limit)}` })),
        el('div', {
          class: 'bar', role: 'progressbar', 'aria-labelledby': 'usage-label',
          'aria-valuemin': '0', 'aria-valuemax': String(limit), 'aria-valuenow': String(Math.min(used, limit)),
          'aria-valuetext': `${fmtNum(used)} of ${fmtNum(limit)} calls used (${pct}%)`,
        }, fill),
        el('p', {
          class: 'usage-foot',
          text: `${fmtNum(Math.max(0, limit - used))} calls left` +
            (resets ? ` · resets ${zonedFmt.format(resets)} (${fromNow(resets)})` : ''),
        }));
    } else {
      nodes.push(
        el('div', { class: 'usage-head' },
          el('span', { text: 'Calls this cycle' }),
          el('span', { class: 'usage-count', text: fmtNum(used) })),
        el('p', { class: 'usage-foot', text: 'No monthly limit' }));
    }
    nodes.push(el('p', {
      class: 'usage-foot',
      text: `Quotas run in ${CYCLE_DAYS}-day cycles` + (start ? `: this one started ${zonedFmt.format(start)}.` : '.'),
    }));
    return nodes;
  }

  // sharedNote explains calls a new key shows that it did not make itself: a
  // rotation keeps the quota, and an expiring key spends it too.
  function sharedNote(current, expiring, old) {
    const start = toDate(current.cycle_start);
    const created = toDate(current.created_at);
    if (Number(current.calls_used || 0) === 0) return '';
    if (expiring.length > 0 && current.status === 'active') {
      return `Your keys ${[current, ...expiring].map(maskOf).join(' and ')} spend this one quota until the old one expires.`;
    }
    const replaced = old.find((k) => (reasonOf(k) === 'rotated' || toDate(k.expires_at) !== null || !k.revoke_reason) &&
      start && (toDate(k.revoked_at || k.expires_at) || 0) >= start);
    if (replaced && created && start && created.getTime() > start.getTime() + 1000) {
      return `The count includes calls made this cycle with ${maskOf(replaced)}, the key this one replaced: a rotation keeps the monthly quota.`;
    }
    return '';
  }

  // chartSlots are the cycle's days: those GET /keys/usage lists (its first day is
  // the cycle's), then the days still to come until the reset.
  function chartSlots(u, k) {
    const slots = [];
    let total = 0;
    for (const d of u.days) {
      if (!d || typeof d.date !== 'string' || Number.isNaN(utcDay(d.date))) continue;
      const calls = Math.max(0, Number(d.calls) || 0);
      total += calls;
      slots.push({ date: d.date, calls, total, future: false });
    }
    const resets = toDate(u.cycle_resets_at) || resetDate(k);
    if (slots.length > 0 && resets) {
      for (let t = utcDay(slots[slots.length - 1].date) + DAY; t < resets.getTime() && slots.length < CYCLE_DAYS + 2; t += DAY) {
        slots.push({ date: isoDay(t), calls: 0, total: 0, future: true });
      }
    }
    return slots;
  }

  function renderChart(u, k) {
    const fig = $('usage-chart');
    const slots = chartSlots(u, k);
    const past = slots.filter((s) => !s.future);
    if (past.length === 0) {
      fig.hidden = true;
      return;
    }
    const limit = Number(u.monthly_call_limit || k.monthly_call_limit || 0);
    const total = past[past.length - 1].total;
    const top = Math.max(limit, total, 1);
    const today = typeof u.to === 'string' ? u.to : past[past.length - 1].date;

    const plot = $('chart-plot');
    const bars = slots.map((s) => {
      const bar = el('div', {
        class: 'chart-bar' + (s.total > 0 ? ' is-used' : '') +
          (limit > 0 && s.total >= limit ? ' is-full' : limit > 0 && s.total >= 0.8 * limit ? ' is-high' : ''),
      });
      bar.style.height = s.future ? '0' : (s.total / top) * 100 + '%';
      return el('div', { class: 'chart-day' + (s.future ? ' is-future' : '') + (s.date === today ? ' is-today' : '') }, bar);
    });
    plot.replaceChildren(...bars);
    if (limit > 0) {
      const line = el('div', { class: 'chart-limit' }, el('span', { text: `Limit ${fmtNum(limit)}` }));
      line.style.bottom = `calc((100% - 18px) * ${limit / top})`;
      plot.append(line);
    }
    // The axis names the cycle's first and last days, and today under its bar
    // (leaving out an end label it would run into).
    const first = slots[0].date;
    const last = slots[slots.length - 1].date;
    const at = slots.findIndex((s) => s.date === today);
    const pos = at < 0 ? -1 : ((at + 0.5) / slots.length) * 100;
    const axis = [];
    if (pos < 0 || pos > 16) axis.push(el('span', { class: 'axis-start', text: dayFmt.format(utcDay(first)) }));
    if (pos >= 0) {
      const label = el('span', { class: 'axis-today', text: `Today, ${dayFmt.format(utcDay(today))}` });
      label.style.left = `clamp(0%, ${pos}%, 100%)`;
      if (pos < 16) label.classList.add('is-start');
      else if (pos > 84) label.classList.add('is-end');
      axis.push(label);
    }
    if (pos < 84) axis.push(el('span', { class: 'axis-end', text: dayFmt.format(utcDay(last)) }));
    $('chart-axis').replaceChildren(...axis);

    let summary = `Calls served so far in this ${CYCLE_DAYS}-day cycle, by UTC day from ${dayFmt.format(utcDay(first))} ` +
      `to ${dayFmt.format(utcDay(last))}: ${fmtNum(total)}`;
    summary += limit > 0 ? ` of the ${fmtNum(limit)}-call limit (${Math.min(100, Math.floor((total / limit) * 100))}%).` : '.';
    const busiest = past.reduce((a, b) => (b.calls > a.calls ? b : a));
    summary += busiest.calls > 0
      ? ` Busiest day: ${dayFmt.format(utcDay(busiest.date))}, ${fmtNum(busiest.calls)} call${busiest.calls === 1 ? '' : 's'}.`
      : ' No calls yet.';
    $('chart-summary').textContent = summary;

    const rows = past.map((s) => el('tr', null,
      el('th', { scope: 'row', text: dayLongFmt.format(utcDay(s.date)) + (s.date === today ? ' (today)' : '') }),
      el('td', { text: fmtNum(s.calls) }),
      el('td', { text: fmtNum(s.total) })));
    document.querySelector('#usage-table tbody').replaceChildren(...rows);
    fig.hidden = false;
  }

  function renderUsage() {
    const section = $('usage');
    const { current, expiring, old } = sorted();
    if (!current) {
      section.hidden = true;
      return;
    }
    $('usage-meter').replaceChildren(...meter(current));
    const note = sharedNote(current, expiring, old);
    $('usage-shared').textContent = note;
    $('usage-shared').hidden = !note;
    const u = state.usage;
    if (u) renderChart(u, current);
    else $('usage-chart').hidden = true;
    $('usage-unavailable').hidden = !state.usageFailed;
    section.hidden = false;
  }

  // ---- plan and billing ------------------------------------------------------

  function renderPlan(current) {
    const facts = [];
    if (current) {
      $('plan-name').textContent = `${planName(current.plan)} plan`;
      const limit = Number(current.monthly_call_limit || 0);
      facts.push(['Monthly limit', limit > 0 ? `${fmtNum(limit)} calls per ${CYCLE_DAYS}-day cycle` : 'No monthly limit']);
      const info = planInfo(current.plan);
      const burst = burstOf(current.burst_limit, current.burst_window_seconds) || burstOf(info.burst_limit, info.burst_window_seconds);
      if (burst) facts.push(['Burst limit', `Up to ${burst}`]);
      const resets = resetDate(current);
      if (resets) facts.push(['Quota resets', `${zonedFmt.format(resets)} (${fromNow(resets)})`]);
    } else {
      $('plan-name').textContent = 'No plan';
    }
    $('plan-facts').replaceChildren(...facts.map(([dt, dd]) => el('div', null, el('dt', { text: dt }), el('dd', { text: dd }))));

    const offers = higherPlans(current);
    $('plan-offers').replaceChildren(...offers.map((p) => {
      const gives = planSummary(p);
      return el('li', { class: 'offer' },
        el('p', { class: 'offer-text' }, el('strong', { text: planName(p.name) }), gives || null),
        offerButton(p, current));
    }));
    $('plan-offers').hidden = offers.length === 0;
    portalButton.hidden = state.keys.length === 0;
    $('plan').hidden = false;
  }

  // ---- the curl example ------------------------------------------------------

  const curl = $('curl-example');
  $('curl-copy').addEventListener('click', () => copyFrom(curl, $('curl-status'), 'command'));

  function renderQuickstart(current) {
    const origin = window.location.origin;
    $('curl-status').textContent = '';
    if (current) {
      const mask = maskOf(current);
      $('quickstart-help').textContent = `Put your key in the x-api-key header. Replace ${mask} with your whole key: ` +
        'it was shown once, when it was issued, and this page never shows it again.';
      curl.textContent = `RR_API_KEY='${mask}'\n` +
        `curl -sS -H "x-api-key: $RR_API_KEY" \\\n  "${origin}/events/search?q=earnings&limit=5"`;
    } else {
      $('quickstart-help').textContent = 'The public feed needs no key. With a plan, your key opens search, companies and portfolios.';
      curl.textContent = `curl -sS "${origin}/events/public"`;
    }
    $('quickstart').hidden = false;
  }

  // ---- loading ---------------------------------------------------------------

  function render() {
    const { active, expiring, old, current } = sorted();
    list.replaceChildren(...active.map(keyCard), ...expiring.map(keyCard));
    list.hidden = active.length + expiring.length === 0;
    renderEmpty(current, old);
    $('revoked-list').replaceChildren(...old.map(oldItem));
    $('revoked-count').textContent = String(old.length);
    $('revoked').hidden = old.length === 0;
    banner.hidden = !(state.pending && !revealed) || awaiting;
    renderAlert(current);
    renderUsage();
    renderPlan(current);
    renderQuickstart(current);
  }

  // validPlans keeps the plans GET /keys offers for sale, when it lists them.
  function validPlans(v) {
    if (!Array.isArray(v)) return null;
    return v.filter((p) => p && typeof p.name === 'string' && p.name !== '');
  }

  async function loadKeys() {
    if (stopped) return;
    keysSection.setAttribute('aria-busy', 'true');
    try {
      const body = await api('GET', '/keys');
      // A JSON list, or {"keys": [...] | null, "reveal_pending": bool, ...}.
      let keys = null;
      if (Array.isArray(body)) keys = body;
      else if (body && Array.isArray(body.keys)) keys = body.keys;
      else if (body && body.keys === null) keys = [];
      if (!keys) throw new ApiError(-1);
      state.keys = keys.filter((k) => k && typeof k === 'object');
      state.pending = !Array.isArray(body) && body.reveal_pending === true;
      state.plans = (!Array.isArray(body) && validPlans(body.plans)) || [];
      render();
      if (notice.getAttribute('role') === 'alert') clearNotice();
      if (!state.loaded) {
        state.loaded = true;
        // After a sign-in (a form post, a sign-in link) focus would stay on the
        // body: start from the page's heading instead.
        if (!document.activeElement || document.activeElement === document.body) $('page-title').focus();
      }
    } catch (err) {
      fail(err, 'load');
    } finally {
      keysSection.setAttribute('aria-busy', 'false');
      $('keys-loading').hidden = true;
    }
  }

  async function loadUsage() {
    if (stopped) return;
    try {
      const u = await api('GET', '/keys/usage');
      if (!u || !Array.isArray(u.days)) throw new ApiError(-1);
      state.usage = u;
      state.usageFailed = false;
    } catch (_) {
      // A session that expired shows on GET /keys; anything else leaves the
      // chart out and says so.
      state.usage = null;
      state.usageFailed = true;
    }
    if (state.loaded) renderUsage();
  }

  async function loadAll() {
    const usage = loadUsage();
    await loadKeys();
    await usage;
    if (state.loaded) renderUsage();
  }

  // An expiring key's "expires in …" stays current; once it has expired, the list
  // is read again.
  setInterval(() => {
    let expired = false;
    for (const p of document.querySelectorAll('[data-expires]')) {
      const d = toDate(p.dataset.expires);
      p.textContent = expiresText(d);
      if (d && d.getTime() <= Date.now()) expired = true;
    }
    if (expired && !stopped) loadKeys();
  }, 30 * 1000);

  if (checkoutCancelled) showNotice('Checkout was cancelled: nothing was bought or charged.', null, 'info');
  loadAll().then(() => {
    if (fromCheckout && state.loaded) awaitCheckout();
  });
})();
