/**
 * rejoinder web SDK and chat widget: `window.Alli`.
 *
 * One dependency-free file. Pages written for the Alli guides (v1 and v2) work unchanged:
 *
 *   Alli.initialize({ sdkKey: "pk_…" });                         // or { apiKey: "pk_…", debug, styleOptions, … }
 *   Alli.event();                                                // the bot's welcome
 *   Alli.event("login_help");                                    // a new conversation, by a skill trigger
 *   Alli.__startConversation(token, { launcher: false, popupMode: true })
 *     .then(function () { Alli.__sendChat("RESUME") });          // resume by a conversation token
 *
 * The server also serves this file as an ES module (`/sdk/alli.esm.js`) whose default export is `window.Alli`.
 *
 * The widget lives in an open Shadow DOM (`#rejoinder-widget`). Message content is only ever rendered as text.
 * Conversation tokens are never stored; what persists (per `persist`) is the conversation id, its session, the
 * session's expiry and the last message seen.
 */
(() => {
  'use strict';

  if (window.Alli && window.Alli.__rejoinder) return; // the script was included twice: keep the first

  /* global __rejoinderModuleUrl */
  // A classic script knows its own URL; the ES module variant defines __rejoinderModuleUrl from import.meta.url.
  const SCRIPT_SRC = document.currentScript
    ? document.currentScript.src
    : typeof __rejoinderModuleUrl === 'string'
      ? __rejoinderModuleUrl
      : '';
  const REQUEST_TIMEOUT_MS = 15000;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  const POLL_INTERVAL_MS = 2000;
  const SILENCE_LIMIT_MS = 45000; // the server pings after 20 s of quiet: longer silence means a dead socket
  const WS_FAILURES_BEFORE_POLLING = 2;
  const SEND_ATTEMPTS = 5;
  const TYPING_TIMEOUT_MS = 15000;
  const HISTORY_PAGE = 500;
  const STORAGE_PREFIX = 'rejoinder:';
  const EVENTS = ['message', 'open', 'close', 'conversation', 'status', 'error'];

  // ------------------------------------------------------------------------------------------- errors

  /** An SDK error: `code` is the API's problem `type` (e.g. `token_expired`), `message` its `detail`. */
  class AlliError extends Error {
    /**
     * @param {string} code
     * @param {string} message
     * @param {number} [status] the HTTP status, when the server answered
     */
    constructor(code, message, status) {
      super(message);
      this.name = 'AlliError';
      this.code = code;
      this.status = status;
    }
  }

  const networkError = () =>
    new AlliError('network_error', 'The chat server cannot be reached. Check the connection and try again.');

  /** Whether a failed request is worth sending again as it is (the same client_message_id keeps it safe). */
  const isTransient = (error) =>
    error.code === 'network_error' || error.code === 'conflict' || [502, 503, 504].includes(error.status);

  /** Token and session refusals: the conversation cannot go on with what this page holds. */
  const isRefusal = (error) =>
    /^token_/.test(error.code) ||
    ['unauthorized', 'forbidden', 'conversation_not_found', 'origin_not_allowed'].includes(error.code);

  // ------------------------------------------------------------------------------------------- the widget's words

  /**
   * The widget's own strings, by language. English is complete; a language may leave keys out (English is used).
   * Pages add a language with `Alli.addLocale(code, strings)` before `initialize({locale: code})`.
   */
  const LOCALES = {
    en: {
      title: 'Chat',
      openChat: 'Open chat',
      closeChat: 'Close chat',
      back: 'Back',
      placeholder: 'Type a message…',
      unavailable: 'Chat unavailable',
      message: 'Message',
      send: 'Send',
      conversation: 'Conversation',
      typing: 'The assistant is typing',
      suggested: 'Suggested replies',
      connecting: 'Connecting…',
      offline: 'Offline. Reconnecting…',
      offlineIn: 'Offline. Reconnecting in {seconds} s…',
      reconnecting: 'Reconnecting…',
      expired: 'This conversation can no longer be continued.',
      ended: 'This conversation has ended.',
      restart: 'Start a new conversation',
      sessionExpired: 'Your previous chat session has expired.',
      unreachable: 'The chat server cannot be reached. Check the connection and try again.',
      busy: 'The chat is busy right now. Please try again in a moment.',
      failed: 'Something went wrong. Please try again.',
      notSent: 'Not sent.',
      sendAgain: 'Send again',
      blocked: 'This chat is not enabled for this website ({origin}) yet.',
      poweredBy: 'Powered by rejoinder',
      justNow: 'just now',
    },
    ko: {
      title: '채팅',
      openChat: '채팅 열기',
      closeChat: '채팅 닫기',
      back: '뒤로',
      placeholder: '메시지를 입력하세요…',
      unavailable: '채팅을 사용할 수 없습니다',
      message: '메시지',
      send: '보내기',
      conversation: '대화',
      typing: '상담원이 입력 중입니다',
      suggested: '추천 답변',
      connecting: '연결 중…',
      offline: '오프라인입니다. 다시 연결하는 중…',
      offlineIn: '오프라인입니다. {seconds}초 후 다시 연결합니다…',
      reconnecting: '다시 연결하는 중…',
      expired: '이 대화는 더 이상 이어갈 수 없습니다.',
      ended: '대화가 종료되었습니다.',
      restart: '새 대화 시작',
      sessionExpired: '이전 채팅 세션이 만료되었습니다.',
      unreachable: '채팅 서버에 연결할 수 없습니다. 연결 상태를 확인한 후 다시 시도해 주세요.',
      busy: '지금은 채팅이 혼잡합니다. 잠시 후 다시 시도해 주세요.',
      failed: '문제가 발생했습니다. 다시 시도해 주세요.',
      notSent: '전송되지 않았습니다.',
      sendAgain: '다시 보내기',
      blocked: '이 웹사이트({origin})에서는 아직 채팅을 사용할 수 없습니다.',
      poweredBy: 'Powered by rejoinder',
      justNow: '방금',
      tokenExpired: '대화 링크가 만료되었습니다. 새 대화를 시작해 주세요.',
      tokenInvalid: '이 대화 링크는 더 이상 유효하지 않습니다.',
      sessionEnded: '채팅 세션이 종료되었습니다.',
    },
    ja: {
      title: 'チャット',
      openChat: 'チャットを開く',
      closeChat: 'チャットを閉じる',
      back: '戻る',
      placeholder: 'メッセージを入力…',
      unavailable: 'チャットは利用できません',
      message: 'メッセージ',
      send: '送信',
      conversation: '会話',
      typing: 'アシスタントが入力中です',
      suggested: '返信の候補',
      connecting: '接続中…',
      offline: 'オフラインです。再接続しています…',
      offlineIn: 'オフラインです。{seconds} 秒後に再接続します…',
      reconnecting: '再接続しています…',
      expired: 'この会話は続けることができません。',
      ended: '会話は終了しました。',
      restart: '新しい会話を始める',
      sessionExpired: '前回のチャットセッションの有効期限が切れました。',
      unreachable: 'チャットサーバーに接続できません。接続を確認して、もう一度お試しください。',
      busy: '現在チャットが混み合っています。しばらくしてからもう一度お試しください。',
      failed: '問題が発生しました。もう一度お試しください。',
      notSent: '送信されませんでした。',
      sendAgain: '再送信',
      blocked: 'このウェブサイト（{origin}）ではまだチャットを利用できません。',
      poweredBy: 'Powered by rejoinder',
      justNow: 'たった今',
      tokenExpired: '会話のリンクの有効期限が切れました。新しい会話を始めてください。',
      tokenInvalid: 'この会話のリンクは無効になりました。',
      sessionEnded: 'チャットセッションは終了しました。',
    },
  };

  /** The strings for `locale` ("ko", "ko-KR", "ja_JP"…): its own, then its language's, then English. */
  function stringsFor(locale) {
    const tag = String(locale || 'en').replace('_', '-');
    const language = tag.split('-')[0].toLowerCase();
    return { ...LOCALES.en, ...(LOCALES[language] || {}), ...(LOCALES[tag] || {}) };
  }

  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (all, name) => (name in values ? values[name] : all));

  /**
   * What a customer reads for an error: never a code, a status or a server's developer text. In English the
   * server's own words for token and session refusals are shown (they are written for customers).
   */
  function customerText(error, strings, english) {
    const code = error.code || '';
    if (code === 'origin_not_allowed') return fill(strings.blocked, { origin: location.origin });
    if (code === 'network_error') return strings.unreachable;
    if (code === 'rate_limited' || code === 'unavailable' || error.status === 429 || error.status === 503) {
      return strings.busy;
    }
    if (/^token_/.test(code) || code === 'unauthorized' || code === 'conversation_closed') {
      if (english && error.message) return error.message;
      if (code === 'token_expired') return strings.tokenExpired || strings.expired;
      if (/^token_/.test(code)) return strings.tokenInvalid || strings.expired;
      if (code === 'conversation_closed') return strings.ended;
      return strings.sessionEnded || strings.expired;
    }
    if (['invalid_input', 'invalid_choice'].includes(code) && english && error.message) return error.message;
    return strings.failed;
  }

  // ------------------------------------------------------------------------------------------- small helpers

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** With `debug: true`, what the SDK does goes to the console (never a token or a session). */
  let debugging = false;
  const debug = (...args) => {
    if (debugging) console.info('[Alli]', ...args);
  };
  const debugWarn = (...args) => {
    if (debugging) console.warn('[Alli]', ...args);
  };

  /**
   * A short fingerprint of a conversation token (53-bit cyrb53): enough to recognise the same token after a
   * reload, and nothing to resume with (tokens themselves are never stored).
   */
  function fingerprint(text) {
    let h1 = 0xdeadbeef;
    let h2 = 0x41c6ce57;
    for (let i = 0; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
  }

  /** Exponential back-off with jitter: between half and all of base·2^attempt, capped. */
  const backoffDelay = (attempt) => {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  };

  const newMessageId = () => {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  };

  const isHttpUrl = (value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      return false;
    }
  };

  const defaultServer = () => {
    const script = SCRIPT_SRC || (document.querySelector('script[src*="/sdk/alli"]') || {}).src || '';
    try {
      return new URL(script, location.href).origin;
    } catch {
      return location.origin;
    }
  };

  // ------------------------------------------------------------------------------------------- the HTTP API

  /** The client API of one bot: SDK-key calls to start or resume, session calls for everything after. */
  class Api {
    /** @param {string} server @param {string} sdkKey */
    constructor(server, sdkKey) {
      this.server = server;
      this.sdkKey = sdkKey;
    }

    start(body) {
      return this.request('POST', '/v1/conversations', this.sdkKey, body);
    }

    resume(token) {
      return this.request('POST', '/v1/conversations/resume', this.sdkKey, { token });
    }

    /** The bot's widget settings and welcome event (GET /v1/widget). */
    settings() {
      return this.request('GET', '/v1/widget', this.sdkKey);
    }

    send(session, conversationId, body) {
      return this.request('POST', `${conversationPath(conversationId)}/messages`, session, body);
    }

    history(session, conversationId, after) {
      const query = `?after=${after}&limit=${HISTORY_PAGE}`;
      return this.request('GET', `${conversationPath(conversationId)}/messages${query}`, session);
    }

    refresh(session, conversationId) {
      return this.request('POST', `${conversationPath(conversationId)}/session/refresh`, session);
    }

    streamUrl(conversationId, after) {
      const base = this.server.replace(/^http/, 'ws');
      return `${base}${conversationPath(conversationId)}/stream?after=${after}`;
    }

    /** One request; resolves with the JSON answer or rejects with an AlliError built from the problem. */
    async request(method, path, credential, body) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      const headers = { Authorization: `Bearer ${credential}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let response;
      try {
        response = await fetch(this.server + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: 'omit',
          mode: 'cors',
          signal: controller.signal,
        });
      } catch {
        throw networkError();
      } finally {
        clearTimeout(timer);
      }
      const answer = await response.json().catch(() => null);
      if (!response.ok) throw problemError(response.status, answer);
      return answer;
    }
  }

  const conversationPath = (id) => `/v1/conversations/${encodeURIComponent(id)}`;

  function problemError(status, problem) {
    const code = problem && typeof problem.type === 'string' ? problem.type : `http_${status}`;
    const detail =
      (problem && (problem.detail || problem.title)) || `The chat server answered with status ${status}.`;
    return new AlliError(code, detail, status);
  }

  // ------------------------------------------------------------------------------------------- persistence

  /** Where a conversation's session survives reloads: sessionStorage, localStorage or nowhere. */
  class Persistence {
    /** @param {'session'|'local'|'none'} mode @param {string} key */
    constructor(mode, key) {
      this.key = STORAGE_PREFIX + key;
      this.storage = null;
      try {
        if (mode === 'local') this.storage = window.localStorage;
        else if (mode !== 'none') this.storage = window.sessionStorage;
      } catch {
        this.storage = null; // storage blocked by the browser's privacy settings
      }
    }

    load() {
      try {
        const saved = JSON.parse(this.storage ? this.storage.getItem(this.key) || 'null' : 'null');
        return saved && saved.conversationId && saved.session ? saved : null;
      } catch {
        return null;
      }
    }

    save(record) {
      try {
        if (this.storage) this.storage.setItem(this.key, JSON.stringify(record));
      } catch {
        /* full or blocked storage: the conversation goes on, it just will not survive a reload */
      }
    }

    clear() {
      try {
        if (this.storage) this.storage.removeItem(this.key);
      } catch {
        /* as above */
      }
    }
  }

  // ------------------------------------------------------------------------------------------- live updates

  /**
   * Keeps one conversation live: a WebSocket that reconnects with back-off from the last seq seen, or polling of
   * the history when WebSockets cannot connect. It reports what arrives; de-duplication is the caller's.
   */
  class LiveConnection {
    /**
     * @param {Api} api
     * @param {{conversationId: string, session: string, after: number}} where
     * @param {{messages: Function, typing: Function, status: Function, state: Function, refused: Function}} on
     */
    constructor(api, where, on) {
      this.api = api;
      this.conversationId = where.conversationId;
      this.session = where.session;
      this.after = where.after;
      this.on = on;
      this.socket = null;
      this.timer = null;
      this.waiting = false; // a reconnect is scheduled
      this.watchdog = null;
      this.attempt = 0;
      this.blockedCount = 0;
      this.polling = typeof WebSocket !== 'function';
      this.run = 0; // bumped by stop(): answers of an older run are ignored
      this.onWake = () => this.wake();
    }

    /** Connect; `quiet` keeps the current state on screen (a planned reconnect, e.g. with a refreshed session). */
    start(quiet = false) {
      this.stop();
      const run = this.run;
      window.addEventListener('online', this.onWake);
      document.addEventListener('visibilitychange', this.onWake);
      if (!quiet) this.on.state('connecting');
      this.connect(run);
    }

    stop() {
      this.run += 1;
      clearTimeout(this.timer);
      clearTimeout(this.watchdog);
      window.removeEventListener('online', this.onWake);
      document.removeEventListener('visibilitychange', this.onWake);
      if (this.socket) {
        const socket = this.socket;
        this.socket = null;
        socket.onclose = socket.onmessage = socket.onopen = socket.onerror = null;
        try {
          socket.close(1000);
        } catch {
          /* already closing */
        }
      }
    }

    /** Back online or visible again: try at once instead of waiting out the back-off. */
    wake() {
      if (document.visibilityState === 'hidden' || !this.waiting || this.polling) return;
      clearTimeout(this.timer);
      this.waiting = false;
      this.connect(this.run);
    }

    connect(run) {
      if (run !== this.run) return;
      if (this.polling) {
        this.poll(run);
        return;
      }
      let socket;
      try {
        socket = new WebSocket(this.api.streamUrl(this.conversationId, this.after));
      } catch {
        this.socketFailed(run, false);
        return;
      }
      this.socket = socket;
      let established = false; // authenticated and replayed: the server sent its status frame
      socket.onopen = () => {
        socket.send(JSON.stringify({ type: 'auth', session: this.session })); // keeps the session out of URLs
        this.armWatchdog(socket);
      };
      socket.onmessage = (event) => {
        this.armWatchdog(socket);
        if (this.onFrame(socket, event.data) === 'status') established = true;
      };
      socket.onclose = (event) => {
        clearTimeout(this.watchdog);
        if (this.socket !== socket) return;
        this.socket = null;
        this.onClose(run, event, established);
      };
    }

    armWatchdog(socket) {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => socket.close(4000, 'silent'), SILENCE_LIMIT_MS);
    }

    /** Handle one frame from the server; returns its type. */
    onFrame(socket, data) {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch {
        return null;
      }
      switch (frame.type) {
        case 'message':
          this.on.messages([frame.message]);
          break;
        case 'status':
          this.attempt = 0;
          this.blockedCount = 0;
          this.on.state('online');
          this.on.status(frame);
          break;
        case 'typing':
          this.on.typing();
          break;
        case 'ping':
          socket.send(JSON.stringify({ type: 'pong' }));
          break;
        default:
          break; // ack, error: this client sends its messages over HTTP
      }
      return frame.type;
    }

    onClose(run, event, established) {
      if (event.code >= 4400 && event.code < 4500 && event.code !== 4408) {
        const [code, ...rest] = (event.reason || '').split(': ');
        const detail = rest.join(': ') || 'The chat server refused this conversation.';
        this.on.refused(new AlliError(code || 'unauthorized', detail, event.code - 4000));
        return;
      }
      if (established) {
        this.retry(run, 'connecting'); // a dropped or restarted server: reconnect, first quickly
        return;
      }
      this.socketFailed(run, true);
    }

    /** The socket never opened: is the server down, or are WebSockets blocked on the way? Ask over HTTP. */
    async socketFailed(run, tried) {
      try {
        const answer = await this.api.history(this.session, this.conversationId, this.after);
        if (run !== this.run) return;
        this.on.messages(answer.messages);
        this.blockedCount += 1;
        if (!tried || this.blockedCount >= WS_FAILURES_BEFORE_POLLING) {
          this.polling = true;
          this.on.state('online');
          this.schedule(run, POLL_INTERVAL_MS);
          return;
        }
        this.retry(run, 'connecting');
      } catch (error) {
        if (run !== this.run) return;
        if (isRefusal(error)) this.on.refused(error);
        else this.retry(run, 'offline');
      }
    }

    async poll(run) {
      try {
        const answer = await this.api.history(this.session, this.conversationId, this.after);
        if (run !== this.run) return;
        this.attempt = 0;
        this.on.state('online');
        this.on.messages(answer.messages);
        this.schedule(run, POLL_INTERVAL_MS);
      } catch (error) {
        if (run !== this.run) return;
        if (isRefusal(error)) this.on.refused(error);
        else this.retry(run, 'offline');
      }
    }

    retry(run, state) {
      const quick = state === 'connecting' && this.attempt === 0; // a drop: try again almost at once
      const delay = quick ? 200 + Math.random() * 300 : backoffDelay(this.attempt);
      this.attempt += 1;
      this.on.state(state, Date.now() + delay);
      this.schedule(run, delay);
    }

    schedule(run, delay) {
      clearTimeout(this.timer);
      this.waiting = true;
      this.timer = setTimeout(() => {
        this.waiting = false;
        this.connect(run);
      }, delay);
    }
  }

  // ------------------------------------------------------------------------------------------- rendering text

  const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  const TRAILING_PUNCTUATION = /[.,;:!?)\]}'"]+$/;

  /** Text with its http(s) links made clickable: text nodes and created anchors only, never parsed HTML. */
  function linkified(text) {
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(URL_PATTERN)) {
      const url = match[0].replace(TRAILING_PUNCTUATION, '');
      if (!isHttpUrl(url)) continue;
      fragment.append(text.slice(last, match.index), anchor(url, url, ''));
      last = match.index + url.length;
    }
    fragment.append(text.slice(last));
    return fragment;
  }

  function anchor(href, label, className) {
    const link = element('a', className, label);
    link.href = href;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    return link;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A small inline icon, drawn with DOM calls (no markup parsing, so strict CSPs and Trusted Types are fine). */
  function icon(pathData) {
    const svgNs = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(svgNs, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const path = document.createElementNS(svgNs, 'path');
    path.setAttribute('d', pathData);
    svg.append(path);
    return svg;
  }

  const ICON_CHAT = 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z';
  const ICON_CLOSE = 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4L12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z';
  const ICON_SEND = 'M3 20.5v-6.2l9-2.3-9-2.3V3.5L22 12z';
  const ICON_BACK = 'M20 11H7.8l5.6-5.6L12 4l-8 8 8 8 1.4-1.4L7.8 13H20z';
  const PROVIDER_URL = 'https://pypi.org/project/rejoinder/';
  const PAGE_BAR_GAP = 8; // px between a page's bottom bar and the launcher above it
  const PAGE_BAR_ZONE = 0.55; // a bar's top is below this fraction of the screen's height

  // ------------------------------------------------------------------------------------------- styles

  const STYLES = `
:host {
  all: initial !important; display: block !important; position: fixed !important; inset: auto !important;
  width: 0 !important; height: 0 !important; margin: 0 !important; padding: 0 !important; border: 0 !important;
  transform: none !important; filter: none !important; opacity: 1 !important; visibility: visible !important;
  z-index: 2147483000 !important; contain: none !important;
}
*, *::before, *::after { box-sizing: border-box; margin: 0; padding: 0; }
[hidden] { display: none !important; }
.root {
  --edge-x: 20px; --edge-bottom: 20px;
  --accent: var(--rejoinder-accent, #2563eb); --accent-ink: #ffffff; --ink: #1f2328; --muted: #5b6470;
  --line: #e3e6ea; --canvas: #f6f7f9; --paper: #ffffff;
  font: 400 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); text-align: left; direction: ltr; letter-spacing: normal; -webkit-font-smoothing: antialiased;
}
button, input { font: inherit; color: inherit; }
button { cursor: pointer; border: 0; background: none; }
:focus { outline: none; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.launcher {
  position: fixed; bottom: var(--edge-bottom); right: var(--edge-x); width: 56px; height: 56px; border-radius: 50%;
  display: grid; place-items: center; background: var(--accent); color: var(--accent-ink);
  box-shadow: 0 6px 20px rgba(15, 23, 42, .22), 0 1px 3px rgba(15, 23, 42, .12); transition: transform .15s ease;
}
.launcher:hover { transform: translateY(-1px) scale(1.04); }
.launcher:focus-visible { outline-color: var(--ink); outline-offset: 3px; }
.launcher svg { width: 26px; height: 26px; fill: currentColor; }
.window {
  position: fixed; display: flex; flex-direction: column; overflow: hidden; background: var(--paper);
  inset: 0; width: auto; height: auto;
}
.window.popup {
  inset: auto; bottom: calc(var(--edge-bottom) + 68px); right: var(--edge-x); width: 380px;
  height: min(620px, calc(100vh - 110px - var(--edge-bottom)));
  border-radius: 16px; border: 1px solid rgba(15, 23, 42, .06);
  box-shadow: 0 16px 48px rgba(15, 23, 42, .18), 0 2px 8px rgba(15, 23, 42, .08);
}
.root.no-launcher .window.popup { bottom: var(--edge-bottom); height: min(660px, calc(100vh - 40px)); }
.root.left .launcher, .root.left .window.popup { right: auto; left: var(--edge-x); }
.root.top .launcher { bottom: auto; top: 20px; }
.root.top .window.popup { bottom: auto; top: 88px; }
.root.top.no-launcher .window.popup { top: 20px; }
.window:not(.popup) .log, .window:not(.popup) .composer, .window:not(.popup) .banner {
  padding-left: max(14px, calc((100% - 760px) / 2)); padding-right: max(14px, calc((100% - 760px) / 2));
}
.header {
  display: flex; align-items: center; gap: 10px; padding: 14px 12px 14px 18px;
  background: var(--accent); color: var(--accent-ink);
}
.title { flex: 1; font-size: 16px; font-weight: 600; line-height: 1.3; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.window.popup .back { display: none; }
.avatar {
  flex: none; width: 28px; height: 28px; border-radius: 50%; object-fit: cover; display: grid; place-items: center;
  background: var(--accent); color: var(--accent-ink); font-size: 13px; font-weight: 600; overflow: hidden;
}
.header .avatar { width: 32px; height: 32px; background: rgba(255, 255, 255, .2); }
.who { display: flex; align-items: center; gap: 7px; margin: 4px 0 -2px 2px; font-size: 12.5px; font-weight: 600;
  color: var(--muted); }
.who .avatar { width: 24px; height: 24px; font-size: 11px; }
.stamp { align-self: center; margin: 8px 0 2px; font-size: 12px; color: var(--muted); }
.provider { padding: 0 12px 8px; background: var(--paper); text-align: center; font-size: 11px; line-height: 1.2; }
.provider a { color: var(--muted); text-decoration: none; }
.provider a:hover { text-decoration: underline; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: #9ca3af; box-shadow: 0 0 0 2px rgba(255,255,255,.5); }
.dot.online { background: #22c55e; }
.dot.offline, .dot.connecting { background: #f59e0b; }
.icon-button { width: 36px; height: 36px; border-radius: 8px; display: grid; place-items: center; color: inherit; }
.icon-button:hover { background: rgba(255, 255, 255, .16); }
.icon-button:focus-visible { outline-color: var(--accent-ink); outline-offset: -3px; }
.icon-button svg { width: 20px; height: 20px; fill: currentColor; }
.banner {
  display: flex; flex-wrap: wrap; align-items: center; gap: 8px 12px; padding: 9px 16px; font-size: 13.5px;
  line-height: 1.4;
  background: #fff7e0; color: #614700; border-bottom: 1px solid #f3e2ad;
}
.banner.error { background: #fdecec; color: #8a1c1c; border-bottom-color: #f5c6c6; }
.banner.ended { background: #eef0f3; color: #3d4550; border-bottom-color: var(--line); }
.banner-text { flex: 1 1 220px; }
.banner-action {
  flex: none; padding: 5px 10px; border-radius: 6px; font-size: 13px; font-weight: 600;
  background: var(--paper); color: var(--ink); border: 1px solid currentColor;
}
.log {
  flex: 1; overflow-y: auto; overscroll-behavior: contain; padding: 16px 14px 8px; background: var(--canvas);
  display: flex; flex-direction: column; gap: 6px;
}
.msg { display: flex; flex-direction: column; align-items: flex-start; max-width: 100%; }
.msg.customer { align-items: flex-end; }
.msg.system { align-items: center; }
.msg + .msg.customer, .msg.customer + .msg:not(.customer) { margin-top: 6px; }
.bubble {
  max-width: 82%; padding: 9px 13px; border-radius: 16px; white-space: pre-wrap; overflow-wrap: anywhere;
  background: var(--paper); color: var(--ink); border: 1px solid var(--line); border-bottom-left-radius: 5px;
}
.customer .bubble {
  background: var(--accent); color: var(--accent-ink); border-color: transparent;
  border-radius: 16px; border-bottom-right-radius: 5px;
}
.system .bubble { background: transparent; border: 0; color: var(--muted); font-size: 13px; text-align: center; }
.bubble a { color: var(--accent); text-decoration: underline; text-underline-offset: 2px; }
.customer .bubble a { color: inherit; }
.msg.sending .bubble { opacity: .7; }
.msg.failed .bubble { background: #fdecec; color: #8a1c1c; border: 1px solid #f5c6c6; }
.note { font-size: 12px; color: var(--muted); margin-top: 3px; }
.retry { font-size: 12px; font-weight: 600; color: #8a1c1c; text-decoration: underline; margin-top: 3px; }
.links { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; max-width: 82%; }
.link-button, .choice {
  display: inline-block; padding: 6px 13px; border-radius: 999px; font-size: 14px; font-weight: 500;
  line-height: 1.35;
  background: var(--paper); color: var(--accent); border: 1.5px solid var(--accent); text-decoration: none;
}
.link-button:hover, .choice:hover { background: var(--accent); color: var(--accent-ink); }
.link-button::after { content: " \\2197"; }
.typing {
  display: flex; gap: 4px; align-self: flex-start; padding: 12px 14px; margin: 2px 0 4px;
  background: var(--paper); border: 1px solid var(--line); border-radius: 16px; border-bottom-left-radius: 5px;
}
.typing span {
  width: 7px; height: 7px; border-radius: 50%; background: #9aa3ad; animation: blink 1.2s infinite ease-in-out;
}
.typing span:nth-child(2) { animation-delay: .15s; }
.typing span:nth-child(3) { animation-delay: .3s; }
@keyframes blink {
  0%, 80%, 100% { opacity: .3; transform: translateY(0); }
  40% { opacity: 1; transform: translateY(-2px); }
}
@media (prefers-reduced-motion: reduce) { .typing span { animation: none; } .launcher { transition: none; } }
.choices { display: flex; flex-wrap: wrap; gap: 8px; margin: 2px 0 4px; max-width: 92%; }
.composer { display: flex; align-items: center; gap: 8px; padding: 10px 12px;
  border-top: 1px solid var(--line); background: var(--paper); }
.input {
  flex: 1; min-width: 0; height: 42px; padding: 0 15px; border-radius: 21px; border: 1px solid #cfd5dc;
  background: var(--paper); color: var(--ink); font-size: 15px;
}
.input::placeholder { color: #7b8490; }
.input:focus-visible { outline: 2px solid var(--accent); outline-offset: 0; border-color: var(--accent); }
.input:disabled { background: #f1f3f5; cursor: not-allowed; }
.send {
  flex: none; width: 42px; height: 42px; border-radius: 50%; display: grid; place-items: center;
  background: var(--accent); color: var(--accent-ink);
}
.send svg { width: 19px; height: 19px; fill: currentColor; }
.send:disabled { background: #c3c9d1; cursor: not-allowed; }
@media (max-width: 639.98px) {
  /* A phone: a smaller button nearer the corner (or at styleOptions' offsets, kept on screen), clear of the home
     indicator and of a bar the page fixes at the bottom (--page-bar); the window takes the screen. */
  .launcher { width: 48px; height: 48px; right: min(var(--phone-x, 12px), calc(100vw - 60px));
    bottom: max(var(--phone-bottom, max(12px, env(safe-area-inset-bottom))), var(--page-bar, 0px)); }
  .root.left .launcher { left: min(var(--phone-x, 12px), calc(100vw - 60px)); }
  .launcher svg { width: 22px; height: 22px; }
  .composer { padding-bottom: max(10px, env(safe-area-inset-bottom)); }
}
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%);
  white-space: nowrap; }
`;

  let sharedSheet = null;

  /** Styles for a shadow root: a constructable stylesheet (no <style> element, so no CSP style-src issue). */
  function adoptStyles(root) {
    const constructable = typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype;
    if ('adoptedStyleSheets' in root && constructable) {
      if (!sharedSheet) {
        sharedSheet = new CSSStyleSheet();
        sharedSheet.replaceSync(STYLES);
      }
      root.adoptedStyleSheets = [sharedSheet];
    } else {
      root.append(element('style', '', STYLES));
    }
  }

  // ------------------------------------------------------------------------------------------- the widget

  /** What the chat window shows for each connection state (the banner) and whether the customer may type. */
  const STATE_VIEWS = {
    idle: { banner: null, input: true },
    connecting: { banner: 'connecting', tone: 'warn', input: true },
    online: { banner: null, input: true },
    offline: { banner: 'offline', tone: 'warn', input: true },
    expired: { banner: 'expired', tone: 'error', input: false, restart: true },
    ended: { banner: 'ended', tone: 'ended', input: false, restart: true },
    blocked: { banner: 'unavailable', tone: 'error', input: false }, // the page's origin is not allowed
  };

  const GROUP_GAP_MS = 5 * 60 * 1000; // messages closer than this share one timestamp
  const STAMP_REFRESH_MS = 60 * 1000;
  const ACCENT_PATTERN = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i;

  /** Dark text on a light accent, white on a dark one (WCAG relative luminance). */
  function inkFor(accent) {
    const hex = accent.length === 4 ? accent.replace(/\w/g, (c) => c + c) : accent;
    const [r, g, b] = [1, 3, 5].map((i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.4 ? '#1f2328' : '#ffffff';
  }

  /**
   * The chat widget's DOM: a launcher and a chat window in an open shadow root. It renders what it is told and
   * reports what the customer does; it holds no conversation state besides what is on screen.
   */
  class Widget {
    /**
     * @param {{placement: string, launcher: boolean, title: string, titleGiven: boolean, strings: object,
     *   locale?: string, backButton: boolean, providerLink: boolean|string,
     *   offsets: {x?: number, bottom?: number}}} options
     * @param {{send: Function, choose: Function, open: Function, close: Function, restart: Function}} on
     */
    constructor(options, on) {
      this.on = on;
      this.t = options.strings;
      this.locale = options.locale || undefined;
      this.titleGiven = options.titleGiven;
      this.fullRequested = false;
      this.launcherWanted = options.launcher;
      this.rendered = new Map(); // seq → element
      this.botName = '';
      this.avatarUrl = '';
      this.lastAppended = null; // {sender, time} of the newest message on screen: starts of groups
      this.countdown = null;
      this.typingTimer = null;
      this.smallScreen = window.matchMedia('(max-width: 639.98px)');
      this.onScreenChange = () => this.layout();
      this.build(options);
      this.stampTimer = setInterval(() => this.refreshStamps(), STAMP_REFRESH_MS);
    }

    build(options) {
      const host = document.createElement('div');
      host.id = 'rejoinder-widget';
      const shadow = host.attachShadow({ mode: 'open' });
      adoptStyles(shadow);
      this.root = element('div', 'root');
      this.setPlacement(options.placement);
      const { x, bottom } = options.offsets;
      if (x !== undefined) {
        this.root.style.setProperty('--edge-x', `${x}px`);
        this.root.style.setProperty('--phone-x', `${x}px`);
      }
      if (bottom !== undefined) {
        this.root.style.setProperty('--edge-bottom', `${bottom}px`);
        // On a phone, measured above the home indicator, and never more than 40% of the screen up.
        const phoneBottom = `calc(min(${bottom}px, 40vh) + env(safe-area-inset-bottom, 0px))`;
        this.root.style.setProperty('--phone-bottom', phoneBottom);
      }
      if (this.locale) this.root.lang = this.locale;
      this.root.append(this.buildLauncher(), this.buildWindow(options));
      shadow.append(this.root);
      this.host = host;
      this.shadow = shadow;
      this.smallScreen.addEventListener('change', this.onScreenChange);
      document.body.append(host);
      this.watchPageBars();
      this.layout();
    }

    /** `bottom-right` (the default), `bottom-left`, `top-right` or `top-left`. */
    setPlacement(placement) {
      const [vertical, horizontal] = String(placement || 'bottom-right').split('-');
      this.root.classList.toggle('top', vertical === 'top');
      this.root.classList.toggle('left', horizontal === 'left');
      if (this.checkPageBars) this.checkPageBars(); // a bar matters only under a launcher at the bottom
    }

    buildLauncher() {
      this.launcher = element('button', 'launcher');
      this.launcher.type = 'button';
      this.launcher.setAttribute('aria-label', this.t.openChat);
      this.launcher.setAttribute('aria-expanded', 'false');
      this.launcher.setAttribute('aria-controls', 'rejoinder-window');
      this.launcher.append(icon(ICON_CHAT));
      this.launcher.addEventListener('click', () => (this.isOpen ? this.on.close() : this.on.open()));
      return this.launcher;
    }

    buildWindow(options) {
      const win = element('section', 'window');
      win.id = 'rejoinder-window';
      win.hidden = true;
      win.setAttribute('role', 'dialog');
      win.setAttribute('aria-labelledby', 'rejoinder-title');
      win.addEventListener('keydown', (event) => {
        if (event.key === 'Escape') {
          event.stopPropagation();
          this.on.close();
        } else if (event.key === 'Tab' && !this.window.classList.contains('popup')) {
          this.keepFocusInside(event);
        }
      });
      this.window = win;
      win.append(
        this.buildHeader(options),
        this.buildBanner(),
        this.buildLog(),
        this.buildComposer(),
      );
      if (options.providerLink) {
        const footer = element('div', 'provider');
        const link = options.providerLink;
        const url = typeof link === 'string' && isHttpUrl(link) ? link : PROVIDER_URL;
        footer.append(anchor(url, this.t.poweredBy, ''));
        win.append(footer);
      }
      this.buildChoices();
      this.announcer = element('div', 'sr-only');
      this.announcer.setAttribute('aria-live', 'polite');
      win.append(this.announcer);
      return win;
    }

    /** In full window the page behind is covered: Tab cycles through the window's own controls. */
    keepFocusInside(event) {
      const controls = [...this.window.querySelectorAll('button, input, a[href], [tabindex="0"]')].filter(
        (node) => !node.disabled && node.getClientRects().length > 0,
      );
      if (!controls.length) return;
      const first = controls[0];
      const last = controls[controls.length - 1];
      const active = this.shadow.activeElement;
      if (event.shiftKey && active === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && active === last) {
        event.preventDefault();
        first.focus();
      }
    }

    iconButton(className, label, path, action) {
      const button = element('button', `icon-button ${className}`);
      button.type = 'button';
      button.setAttribute('aria-label', label);
      button.append(icon(path));
      button.addEventListener('click', action);
      return button;
    }

    buildHeader(options) {
      const header = element('header', 'header');
      this.heading = element('h2', 'title', options.title);
      this.heading.id = 'rejoinder-title';
      this.dot = element('span', 'dot');
      this.dot.setAttribute('aria-hidden', 'true');
      this.headerAvatar = element('span', 'avatar');
      this.headerAvatar.hidden = true;
      this.closeButton = this.iconButton('close', this.t.closeChat, ICON_CLOSE, () => this.on.close());
      if (options.backButton) header.append(this.iconButton('back', this.t.back, ICON_BACK, () => this.on.close()));
      header.append(this.dot, this.headerAvatar, this.heading, this.closeButton);
      return header;
    }

    buildBanner() {
      this.banner = element('div', 'banner');
      this.banner.setAttribute('role', 'status');
      this.banner.hidden = true;
      this.bannerText = element('span', 'banner-text');
      this.bannerAction = element('button', 'banner-action', this.t.restart);
      this.bannerAction.type = 'button';
      this.bannerAction.hidden = true;
      this.bannerAction.addEventListener('click', () => this.on.restart());
      this.banner.append(this.bannerText, this.bannerAction);
      return this.banner;
    }

    buildLog() {
      this.log = element('div', 'log');
      this.log.setAttribute('role', 'log');
      this.log.setAttribute('aria-live', 'off'); // new bot messages are announced once, by the announcer
      this.log.setAttribute('aria-label', this.t.conversation);
      this.log.tabIndex = 0;
      this.typing = element('div', 'typing');
      this.typing.setAttribute('role', 'status');
      this.typing.setAttribute('aria-label', this.t.typing);
      this.typing.append(element('span'), element('span'), element('span'));
      this.typing.hidden = true;
      this.log.append(this.typing);
      return this.log;
    }

    /** Quick replies live in the log, right under the bot message that asks. */
    buildChoices() {
      this.choices = element('div', 'choices');
      this.choices.setAttribute('role', 'group');
      this.choices.setAttribute('aria-label', this.t.suggested);
      this.choices.hidden = true;
      this.log.insertBefore(this.choices, this.typing);
    }

    buildComposer() {
      const form = element('form', 'composer');
      this.input = element('input', 'input');
      this.input.type = 'text';
      this.input.maxLength = 4000;
      this.input.autocomplete = 'off';
      this.input.placeholder = this.t.placeholder;
      this.input.setAttribute('aria-label', this.t.message);
      this.sendButton = element('button', 'send');
      this.sendButton.type = 'submit';
      this.sendButton.setAttribute('aria-label', this.t.send);
      this.sendButton.append(icon(ICON_SEND));
      form.append(this.input, this.sendButton);
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        const text = this.input.value.trim();
        if (!text || this.input.disabled) return;
        this.input.value = '';
        this.on.send(text);
      });
      return form;
    }

    /** The bot's `widget:` settings from the server: title (unless the page set one), accent, avatar, name. */
    applyLook(look) {
      const title = look.title || look.name; // the bot's name when it has no title of its own
      if (typeof title === 'string' && title && !this.titleGiven) this.heading.textContent = title;
      if (typeof look.accent === 'string' && ACCENT_PATTERN.test(look.accent)) {
        this.root.style.setProperty('--accent', `var(--rejoinder-accent, ${look.accent})`); // the page's CSS wins
        this.root.style.setProperty('--accent-ink', inkFor(look.accent));
      }
      this.botName = typeof look.name === 'string' ? look.name : '';
      this.avatarUrl = typeof look.avatar === 'string' && isHttpUrl(look.avatar) ? look.avatar : '';
      if (this.avatarUrl) {
        const avatar = this.avatarElement();
        this.headerAvatar.replaceWith(avatar);
        this.headerAvatar = avatar;
      }
      // Messages already on screen (a resumed history) get the name and picture too.
      for (const who of this.log.querySelectorAll('.who')) who.replaceWith(this.whoElement());
    }

    /** The bot's picture, or the first letter of its name on the accent colour. */
    avatarElement() {
      if (this.avatarUrl) {
        const image = element('img', 'avatar');
        image.src = this.avatarUrl;
        image.alt = '';
        image.referrerPolicy = 'no-referrer';
        return image;
      }
      const initial = element('span', 'avatar', (this.botName || '?').trim().charAt(0).toUpperCase());
      initial.setAttribute('aria-hidden', 'true');
      return initial;
    }

    whoElement() {
      const who = element('div', 'who');
      who.append(this.avatarElement(), element('span', 'who-name', this.botName));
      if (!this.botName && !this.avatarUrl) who.hidden = true;
      return who;
    }

    // ----------------------------------------------------------------------------------------- open and close

    get isOpen() {
      return !this.window.hidden;
    }

    open(full, focus = true) {
      if (full !== undefined) this.fullRequested = full;
      this.window.hidden = false;
      this.launcher.setAttribute('aria-expanded', 'true');
      this.layout();
      this.scrollToEnd();
      if (focus) (this.input.disabled ? this.closeButton : this.input).focus({ preventScroll: true });
    }

    close() {
      const hadFocus = this.shadow.activeElement !== null;
      this.window.hidden = true;
      this.launcher.setAttribute('aria-expanded', 'false');
      this.layout();
      if (hadFocus && !this.launcher.hidden) this.launcher.focus({ preventScroll: true });
    }

    setLauncher(visible) {
      this.launcherWanted = visible;
      this.layout();
    }

    /** Full window when asked or on a small screen; the launcher only when wanted and not covered. */
    layout() {
      const full = this.fullRequested || this.smallScreen.matches;
      this.window.classList.toggle('popup', !full);
      this.window.setAttribute('aria-modal', String(full && this.isOpen));
      this.root.classList.toggle('no-launcher', !this.launcherWanted);
      this.launcher.hidden = !this.launcherWanted || (full && this.isOpen);
      this.launcher.replaceChildren(icon(this.isOpen ? ICON_CLOSE : ICON_CHAT)); // a toggle: open, then close
      this.launcher.setAttribute('aria-label', this.isOpen ? this.t.closeChat : this.t.openChat);
      this.checkPageBars();
    }

    // ----------------------------------------------------------------------------------------- a page's bottom bar

    /**
     * A page may fix a bar at the bottom of a phone's screen (an "Add to cart" bar, a tab bar) just where the
     * launcher stands. The launcher is lifted above it, checked on open, close, resize and scroll: at most once a
     * frame, and only on a phone, where the launcher sits at the bottom.
     */
    watchPageBars() {
      this.pageBarLift = 0;
      this.pageBarFrame = 0;
      this.checkPageBars = () => {
        if (!this.pageBarFrame) this.pageBarFrame = requestAnimationFrame(() => this.liftAbovePageBar());
      };
      // Capture: the scrolls of a page's inner scrollers too.
      window.addEventListener('scroll', this.checkPageBars, { capture: true, passive: true });
      window.addEventListener('resize', this.checkPageBars);
      window.addEventListener('load', this.checkPageBars);
    }

    liftAbovePageBar() {
      this.pageBarFrame = 0;
      const style = this.root.style;
      style.removeProperty('--page-bar'); // back to the launcher's own spot, where a bar would be under it
      const phone = this.smallScreen.matches && !this.launcher.hidden && !this.root.classList.contains('top');
      const bar = phone ? this.pageBarAt(this.launcher.getBoundingClientRect()) : null;
      const lift = bar ? Math.ceil(window.innerHeight - bar.getBoundingClientRect().top + PAGE_BAR_GAP) : 0;
      if (lift) style.setProperty('--page-bar', `${lift}px`);
      if (lift !== this.pageBarLift) {
        const name = bar && bar.tagName.toLowerCase() + (bar.id ? `#${bar.id}` : '');
        debug(lift ? `launcher lifted ${lift}px above the page's bar ${name}` : 'launcher back in its place');
        this.pageBarLift = lift;
      }
    }

    /**
     * The highest element fixed (or stuck) to the bottom of the screen under `spot`, or null. Only the lower part
     * of the screen counts: an overlay or a full-height side panel is no bar, and the launcher stays on screen.
     */
    pageBarAt(spot) {
      const height = window.innerHeight;
      const x = spot.left + spot.width / 2;
      const seen = new Set([this.host, document.body, document.documentElement]);
      let bar = null;
      let top = height;
      for (const y of [height - 1, spot.bottom - 1, spot.top + spot.height / 2, spot.top + 1]) {
        for (const found of document.elementsFromPoint(x, y)) {
          if (seen.has(found)) continue;
          seen.add(found);
          const css = getComputedStyle(found);
          if (css.position !== 'fixed' && (css.position !== 'sticky' || css.bottom === 'auto')) continue;
          const box = found.getBoundingClientRect();
          if (box.top > height * PAGE_BAR_ZONE && box.top < top) {
            bar = found;
            top = box.top;
          }
        }
      }
      return bar;
    }

    // ----------------------------------------------------------------------------------------- state

    /** Show a connection state; `retryAt` (ms epoch) adds a countdown, `detail` replaces the default text. */
    showState(state, { detail, retryAt } = {}) {
      const view = STATE_VIEWS[state] || STATE_VIEWS.idle;
      clearInterval(this.countdown);
      this.dot.className = `dot ${state}`;
      const text = detail || (view.banner && this.t[view.banner]);
      this.banner.hidden = !text;
      this.banner.className = `banner ${view.tone || ''}`;
      this.bannerText.textContent = text || '';
      this.bannerAction.hidden = !view.restart;
      if (state === 'offline' && retryAt) this.runCountdown(retryAt);
      const wasFocused = this.shadow.activeElement === this.input;
      this.input.disabled = !view.input;
      this.sendButton.disabled = !view.input;
      this.input.placeholder = view.input ? this.t.placeholder : this.t.unavailable;
      if (!view.input) {
        this.setChoices([]);
        this.setTyping(false);
        if (wasFocused) (view.restart ? this.bannerAction : this.closeButton).focus({ preventScroll: true });
      }
    }

    runCountdown(retryAt) {
      const tick = () => {
        const seconds = Math.ceil((retryAt - Date.now()) / 1000);
        this.bannerText.textContent = seconds > 0 ? fill(this.t.offlineIn, { seconds }) : this.t.reconnecting;
        if (seconds <= 0) clearInterval(this.countdown);
      };
      tick();
      this.countdown = setInterval(tick, 1000);
    }

    setTyping(on) {
      clearTimeout(this.typingTimer);
      const stick = this.nearEnd();
      this.typing.hidden = !on;
      if (on) {
        this.log.append(this.typing); // always last
        this.typingTimer = setTimeout(() => this.setTyping(false), TYPING_TIMEOUT_MS);
      }
      if (stick) this.scrollToEnd();
    }

    /** Quick replies: `[{label, value}]`; an empty list hides them. */
    setChoices(choices) {
      const key = JSON.stringify(choices.map((choice) => [choice.label, choice.value]));
      const anchorNode = this.firstLocal();
      if (this.choices.nextSibling !== anchorNode) this.log.insertBefore(this.choices, anchorNode);
      if (key === this.choicesKey) {
        // The same replies again (the answer and the live stream both bring them): keep the buttons, and the focus.
        this.choices.hidden = choices.length === 0 || this.input.disabled;
        return;
      }
      this.choicesKey = key;
      const hadFocus = this.choices.contains(this.shadow.activeElement);
      this.choices.replaceChildren();
      for (const choice of choices) {
        const button = element('button', 'choice', choice.label);
        button.type = 'button';
        button.addEventListener('click', () => {
          this.input.focus({ preventScroll: true }); // the buttons go away: keep the focus in the window
          this.on.choose(choice);
        });
        this.choices.append(button);
      }
      this.choices.hidden = choices.length === 0 || this.input.disabled;
      if (hadFocus) (this.choices.firstChild || this.input).focus({ preventScroll: true });
      if (choices.length && this.nearEnd(160)) this.scrollToEnd();
    }

    announce(text) {
      this.announcer.textContent = text;
    }

    // ----------------------------------------------------------------------------------------- messages

    clear() {
      this.rendered.clear();
      this.lastAppended = null;
      this.log.replaceChildren(this.choices, this.typing);
      this.setChoices([]);
    }

    /**
     * Put messages on screen in seq order, each once. A run of new messages at the end (a whole history on resume)
     * goes in with one DocumentFragment: one layout for all of them.
     */
    addMessages(messages) {
      const stick = this.nearEnd() || this.rendered.size === 0;
      const fragment = document.createDocumentFragment();
      let lastSeq = this.lastRenderedSeq();
      for (const message of messages) {
        const node = this.messageElement(message);
        if (message.seq > lastSeq) {
          this.startGroup(message, fragment);
          fragment.append(node);
          lastSeq = message.seq;
        } else {
          this.log.insertBefore(node, this.elementAfter(message.seq));
        }
        this.rendered.set(message.seq, node);
      }
      this.log.insertBefore(fragment, this.choices.hidden ? this.firstLocal() : this.choices);
      if (stick) this.scrollToEnd();
    }

    /**
     * Before a message added at the end: a timestamp when it is the first in a while, and the bot's name and
     * picture when the bot starts speaking.
     */
    startGroup(message, fragment) {
      const time = Date.parse(message.created_at);
      const last = this.lastAppended;
      const newTime = !Number.isNaN(time) && (!last || !(time - last.time < GROUP_GAP_MS));
      if (newTime) fragment.append(this.stampElement(time));
      if (message.sender === 'bot' && (newTime || !last || last.sender !== 'bot')) fragment.append(this.whoElement());
      this.lastAppended = { sender: message.sender, time: Number.isNaN(time) ? last && last.time : time };
    }

    stampElement(time) {
      const stamp = element('div', 'stamp');
      stamp.dataset.time = String(time);
      stamp.title = new Date(time).toLocaleString(this.locale, { dateStyle: 'full', timeStyle: 'medium' });
      stamp.textContent = this.relativeTime(time);
      return stamp;
    }

    /** "just now", "5 minutes ago", a time today, or a date and time before today. */
    relativeTime(time) {
      const seconds = (Date.now() - time) / 1000;
      if (seconds < 60) return this.t.justNow;
      if (seconds < 3600 && typeof Intl.RelativeTimeFormat === 'function') {
        const format = new Intl.RelativeTimeFormat(this.locale, { numeric: 'auto' });
        return format.format(-Math.floor(seconds / 60), 'minute');
      }
      const date = new Date(time);
      const today = new Date().toDateString() === date.toDateString();
      return today
        ? date.toLocaleTimeString(this.locale, { hour: 'numeric', minute: '2-digit' })
        : date.toLocaleString(this.locale, { dateStyle: 'medium', timeStyle: 'short' });
    }

    refreshStamps() {
      if (!this.isOpen) return;
      for (const stamp of this.log.querySelectorAll('.stamp')) {
        stamp.textContent = this.relativeTime(Number(stamp.dataset.time));
      }
    }

    lastRenderedSeq() {
      let last = 0;
      for (const seq of this.rendered.keys()) last = Math.max(last, seq);
      return last;
    }

    elementAfter(seq) {
      let best = null;
      for (const [other, node] of this.rendered) {
        if (other > seq && (best === null || other < best[0])) best = [other, node];
      }
      return best ? best[1] : this.firstLocal();
    }

    firstLocal() {
      return this.log.querySelector('.msg.local') || this.typing;
    }

    messageElement(message) {
      const sender = ['customer', 'bot', 'system'].includes(message.sender) ? message.sender : 'system';
      const node = element('div', `msg ${sender}`);
      node.dataset.seq = String(message.seq);
      const bubble = element('div', 'bubble');
      bubble.append(linkified(String(message.text || '')));
      if (message.created_at) node.title = new Date(message.created_at).toLocaleString(this.locale);
      node.append(bubble);
      const links = (message.buttons || []).filter((button) => button.url && isHttpUrl(button.url));
      if (links.length) {
        const row = element('div', 'links');
        for (const link of links) row.append(anchor(link.url, String(link.label || link.url), 'link-button'));
        node.append(row);
      }
      return node;
    }

    /** A customer's message on its way: shown at once, replaced by the server's copy when that arrives. */
    addLocal(text) {
      const node = element('div', 'msg customer local sending');
      node.append(element('div', 'bubble', text));
      this.log.insertBefore(node, this.typing);
      this.scrollToEnd();
      return node;
    }

    /** The oldest message on its way with this text, if any (the server's copy of it has arrived). */
    findLocal(text) {
      for (const node of this.log.querySelectorAll('.msg.local')) {
        if (node.firstChild.textContent === text) return node;
      }
      return null;
    }

    markFailed(node, message, retry) {
      node.classList.remove('sending');
      node.classList.add('failed');
      node.querySelectorAll('.note, .retry').forEach((old) => old.remove());
      node.append(element('div', 'note', `${this.t.notSent} ${message}`));
      const again = element('button', 'retry', this.t.sendAgain);
      again.type = 'button';
      again.addEventListener('click', () => {
        node.classList.remove('failed');
        node.classList.add('sending');
        again.remove();
        node.querySelector('.note')?.remove();
        retry();
      });
      node.append(again);
    }

    nearEnd(margin = 80) {
      return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < margin;
    }

    scrollToEnd() {
      this.log.scrollTop = this.log.scrollHeight;
    }

    destroy() {
      clearInterval(this.countdown);
      clearInterval(this.stampTimer);
      clearTimeout(this.typingTimer);
      this.smallScreen.removeEventListener('change', this.onScreenChange);
      cancelAnimationFrame(this.pageBarFrame);
      window.removeEventListener('scroll', this.checkPageBars, { capture: true });
      window.removeEventListener('resize', this.checkPageBars);
      window.removeEventListener('load', this.checkPageBars);
      this.host.remove();
    }
  }

  // ------------------------------------------------------------------------------------------- the conversation

  /**
   * One page's chat: the current conversation (id, session, messages seen), its live connection, its
   * persistence, and the widget. Calls that talk to the server run one at a time, in the order they were made.
   */
  class Chat {
    constructor(options) {
      this.options = options;
      this.api = new Api(options.server, options.sdkKey);
      this.persistence = new Persistence(options.persist, `${options.server}|${options.sdkKey}`);
      this.listeners = new Map(EVENTS.map((name) => [name, new Set()]));
      this.status = 'idle';
      this.queue = Promise.resolve();
      this.generation = 0;
      this.conversation = null; // {id, session, issuedAt, expiresAt, closed}
      this.seen = new Set();
      this.latest = null; // the newest message seen
      this.contiguous = 0; // every seq up to here has been seen: where a reconnect reads on from
      this.pending = undefined; // the server's `pending`, or undefined when not known since the last messages
      this.live = null;
      this.refreshTimer = null;
      this.widget = null;
      this.strings = stringsFor(options.locale);
      this.english = !options.locale || /^en\b/i.test(options.locale);
      this.look = null; // the bot's widget settings, once the server has answered
      // The resume this page session made: {token: fingerprint, text: its resume message}; `awaiting` while its
      // message may still come, `replay` when the page was reloaded since.
      this.resumed = null;
      this.onVisible = () => this.checkRefreshDue();
    }

    // ----------------------------------------------------------------------------------------- set-up

    /** Build the widget once the body exists, and bring back the conversation of an earlier page, if any. */
    async mount() {
      if (!document.body) {
        await new Promise((resolve) => document.addEventListener('DOMContentLoaded', resolve, { once: true }));
      }
      if (this.destroyed) return;
      const settings = this.loadSettings(); // in parallel with bringing back an earlier conversation
      this.widget = new Widget(
        {
          placement: this.options.placement,
          launcher: this.options.launcher,
          title: this.options.title || this.strings.title,
          titleGiven: Boolean(this.options.title),
          strings: this.strings,
          locale: this.options.locale,
          backButton: this.options.backButton,
          providerLink: this.options.providerLink,
          offsets: this.options.offsets,
        },
        {
          send: (text) => this.userSend({ text }, text),
          choose: (choice) => this.userSend({ choice: choice.value }, choice.label),
          open: () => this.open(),
          close: () => this.close(),
          restart: () => this.restart(),
        },
      );
      document.addEventListener('visibilitychange', this.onVisible);
      const saved = this.persistence.load();
      if (saved) await this.restore(saved);
      if (this.options.popupMode) this.open();
      await settings;
    }

    /**
     * The bot's widget settings. A page on an origin the bot does not allow learns it here, before any chat;
     * other failures keep the defaults (the welcome event is then `welcome`).
     */
    loadSettings() {
      this.settings = this.api.settings().then(
        (look) => {
          debug('bot settings', look);
          this.look = look;
          if (this.widget) this.widget.applyLook(look);
          return look;
        },
        (error) => {
          if (error.code === 'origin_not_allowed') this.fail(error);
          else debugWarn('the bot settings could not be read:', error.code, error.message);
          return null;
        },
      );
      return this.settings;
    }

    async restore(saved) {
      if (!(Date.parse(saved.expiresAt) > Date.now())) {
        this.persistence.clear();
        this.setStatus('expired', { detail: this.strings.sessionExpired });
        return;
      }
      const { conversationId: id, session, expiresAt, issuedAt } = saved;
      const resume = saved.resume;
      this.resumed = resume && typeof resume.token === 'string' ? { token: resume.token, text: resume.text } : null;
      this.adopt({ id, session, expiresAt, issuedAt });
      try {
        await this.loadHistory();
      } catch (error) {
        if (isRefusal(error)) {
          this.persistence.clear();
          this.fail(error);
          return;
        }
      }
      this.goLive();
      if (saved.open) this.open(undefined, false); // back as it was, without taking the page's focus
    }

    async loadHistory() {
      for (;;) {
        const page = await this.api.history(this.conversation.session, this.conversation.id, this.contiguous);
        this.ingest(page.messages, { announce: false });
        if (page.messages.length < HISTORY_PAGE) return;
      }
    }

    // ----------------------------------------------------------------------------------------- the queue

    /** Run `task` after every call made before it (a failed call does not stop the ones after it). */
    enqueue(task) {
      const generation = this.generation;
      const run = () => {
        if (generation !== this.generation) throw new AlliError('destroyed', 'The chat was reset or destroyed.');
        return task();
      };
      const result = this.queue.then(run, run);
      this.queue = result.catch(() => undefined);
      return result;
    }

    // ----------------------------------------------------------------------------------------- public actions

    /** A new conversation started by an event; with no name, the bot's welcome. */
    event(name, variables) {
      return this.enqueue(async () => {
        this.open();
        let event = name;
        if (event === undefined) {
          const look = await this.settings;
          event = look ? look.welcome_event : 'welcome';
          if (look && !look.welcome_skill) {
            // No skill greets: an open chat whose first message starts the conversation (the default skill).
            debug(`no skill is triggered by "${event}": waiting for the customer's first message`);
            this.beginNew();
            this.setStatus('idle');
            return null;
          }
        }
        this.beginNew();
        debug('event', event);
        const body = { event, ...this.startFields(variables) };
        return this.startWith(() => this.api.start(body));
      });
    }

    startConversation(token, options) {
      return this.enqueue(async () => {
        if (options.launcher !== undefined) this.widget.setLauncher(Boolean(options.launcher));
        this.open(options.popupMode ? true : undefined);
        const print = fingerprint(token);
        const resumed = this.resumed;
        if (resumed && resumed.token === print && this.conversation && !this.conversation.closed) {
          // A reload of the page that resumed: the conversation is back from this page session, as it is.
          debug('this token was resumed earlier in this page session: showing the conversation as it is');
          Object.assign(resumed, { replay: true, awaiting: true });
          return this.currentAnswer();
        }
        debug('resuming a conversation by its token');
        const answer = await this.startWith(() => this.api.resume(token), { keepSameConversation: true });
        this.resumed = { token: print, awaiting: true };
        this.saveState();
        return answer;
      });
    }

    /** What resuming answers, from what is on screen (for a resume this page session already made). */
    currentAnswer() {
      return {
        conversation_id: this.conversation.id,
        status: this.conversation.closed ? 'closed' : 'active',
        messages: [],
        pending: this.pending === undefined ? null : this.pending,
        replayed: true,
      };
    }

    sendChat(text) {
      return this.enqueue(() => {
        const shown = String(text);
        const resumed = this.resumed;
        if (resumed && resumed.awaiting) {
          // The first message after a resume is its resume message: a reload must not send it again.
          resumed.awaiting = false;
          if (resumed.replay && resumed.text === shown) {
            debug('the resume message was sent before this reload: not sending it again');
            return { messages: [], pending: this.pending === undefined ? null : this.pending, replayed: true };
          }
          Object.assign(resumed, { text: shown, replay: false });
          this.saveState();
        }
        return this.sendNow({ text: shown }, shown);
      });
    }

    /** What the customer typed or clicked in the widget: sent through the queue; failures show on screen. */
    userSend(body, shown) {
      this.sendNowQueued(body, shown).catch(() => undefined);
    }

    sendNowQueued(body, shown) {
      return this.enqueue(() => this.sendNow(body, shown));
    }

    open(full, focus = true) {
      if (!this.widget) {
        this.enqueue(() => this.open(full, focus)).catch(() => undefined); // initialize() is still building it
        return;
      }
      const wasOpen = this.widget.isOpen;
      this.widget.open(full, focus);
      this.saveState();
      if (!wasOpen) this.emit('open');
    }

    close() {
      if (!this.widget) {
        this.enqueue(() => this.close()).catch(() => undefined);
        return;
      }
      if (!this.widget.isOpen) return;
      this.widget.close();
      this.saveState();
      this.emit('close');
    }

    /** Forget the conversation; the next event or message starts a new one. */
    reset() {
      this.generation += 1;
      this.queue = Promise.resolve();
      this.beginNew();
      this.setStatus('idle');
    }

    /** The restart button of an expired or ended conversation. */
    restart() {
      this.reset();
      if (this.widget) this.widget.input.focus();
    }

    destroy() {
      this.destroyed = true;
      this.generation += 1;
      this.forget();
      document.removeEventListener('visibilitychange', this.onVisible);
      if (this.widget) this.widget.destroy();
      this.widget = null;
      for (const set of this.listeners.values()) set.clear();
    }

    // ----------------------------------------------------------------------------------------- flows

    startFields(variables) {
      const fields = {};
      const merged = { ...(this.options.variables || {}), ...(variables || {}) };
      if (Object.keys(merged).length) fields.variables = merged;
      if (this.options.user) fields.user = this.options.user;
      return fields;
    }

    /** Start or resume: one call that answers with a session and the conversation so far. */
    async startWith(call, { keepSameConversation = false } = {}) {
      if (this.status === 'blocked') throw this.blockedError;
      const before = this.status;
      this.setStatus('connecting');
      let answer;
      try {
        answer = await call();
      } catch (error) {
        if (keepSameConversation && this.live) {
          // The page resumes on every load; a token used up by an earlier load must not end the live chat.
          this.setStatus(before);
          this.emit('error', error);
        } else {
          this.fail(error);
        }
        throw error;
      }
      const same = keepSameConversation && this.conversation && this.conversation.id === answer.conversation_id;
      if (!same) this.beginNew();
      this.adopt({ id: answer.conversation_id, session: answer.session, expiresAt: answer.session_expires_at });
      this.ingest(answer.messages, { announce: !keepSameConversation });
      this.applyPending(answer.pending);
      this.applyConversationStatus(answer.status);
      if (answer.status !== 'closed') this.goLive();
      debug('conversation', answer.conversation_id, `${(answer.messages || []).length} messages`);
      this.emit('conversation', answer.conversation_id);
      return answer;
    }

    /** Send a text or a choice into the current conversation, or start one with a first text. */
    async sendNow(body, shown) {
      if (!this.conversation) {
        if (body.text === undefined) throw new AlliError('no_conversation', 'There is no conversation to answer.');
        this.open();
        const local = this.widget.addLocal(shown);
        try {
          return await this.startWith(() => this.api.start({ text: body.text, ...this.startFields() }));
        } finally {
          local.remove();
        }
      }
      if (this.status === 'expired' || this.status === 'ended') {
        const view = STATE_VIEWS[this.status];
        const code = this.status === 'ended' ? 'conversation_closed' : 'unauthorized';
        throw new AlliError(code, this.lastDetail || this.strings[view.banner]);
      }
      this.widget.setChoices([]);
      const local = this.widget.addLocal(shown);
      const request = { ...body, client_message_id: newMessageId() };
      return this.deliver(request, local);
    }

    /** POST a message, again with the same client_message_id after a network failure, until it is answered. */
    async deliver(request, local) {
      const conversation = this.conversation;
      this.widget.setTyping(true);
      for (let attempt = 0; ; attempt += 1) {
        try {
          const answer = await this.api.send(conversation.session, conversation.id, request);
          if (conversation !== this.conversation) return answer;
          local.remove();
          this.ingest(answer.messages, { announce: true });
          this.applyPending(answer.pending);
          this.widget.setTyping(false);
          return answer;
        } catch (error) {
          if (conversation !== this.conversation) throw error;
          if (isTransient(error) && attempt + 1 < SEND_ATTEMPTS) {
            await sleep(backoffDelay(attempt));
            continue;
          }
          this.widget.setTyping(false);
          if (isRefusal(error) || error.code === 'conversation_closed') {
            local.remove();
            this.fail(error);
          } else {
            const again = () => this.enqueue(() => this.deliver(request, local)).catch(() => undefined);
            this.widget.markFailed(local, customerText(error, this.strings, this.english), again);
            this.emit('error', error);
          }
          throw error;
        }
      }
    }

    /** Take messages from any source (answers, the stream, polling): each seq once, in order. */
    ingest(messages, { announce }) {
      const fresh = [];
      for (const message of messages || []) {
        if (!message || typeof message.seq !== 'number' || this.seen.has(message.seq)) continue;
        this.seen.add(message.seq);
        fresh.push(message);
      }
      if (!fresh.length) return;
      fresh.sort((a, b) => a.seq - b.seq);
      const newest = fresh[fresh.length - 1];
      if (!this.latest || newest.seq > this.latest.seq) this.latest = newest;
      while (this.seen.has(this.contiguous + 1)) this.contiguous += 1;
      for (const message of fresh) {
        if (message.sender === 'customer') this.widget.findLocal(message.text)?.remove();
      }
      this.widget.addMessages(fresh);
      this.pending = undefined;
      this.refreshChoices();
      const bot = fresh.filter((message) => message.sender === 'bot');
      if (bot.length) this.widget.setTyping(false);
      if (announce && bot.length) this.widget.announce(bot.map((message) => message.text).join('\n'));
      if (this.live) this.live.after = this.contiguous;
      this.saveState();
      for (const message of fresh) this.emit('message', message);
    }

    applyPending(pending) {
      this.pending = pending;
      this.refreshChoices();
    }

    /** Quick replies: the server's pending choices, or the value buttons of the latest bot message. */
    refreshChoices() {
      if (!this.widget) return;
      let choices = [];
      if (this.pending && Array.isArray(this.pending.choices)) {
        choices = this.pending.choices;
      } else if (this.pending === undefined) {
        const last = this.lastMessage;
        if (last && last.sender === 'bot') {
          choices = (last.buttons || []).filter((button) => button.value !== undefined && button.value !== null);
        }
      }
      this.widget.setChoices(choices.map((choice) => ({ label: String(choice.label), value: String(choice.value) })));
    }

    get lastMessage() {
      return this.latest;
    }

    applyConversationStatus(status) {
      if (status === 'closed') {
        this.conversation.closed = true;
        this.stopLive();
        this.setStatus('ended');
      }
    }

    goLive(quiet = false) {
      this.stopLive();
      const conversation = this.conversation;
      this.live = new LiveConnection(
        this.api,
        { conversationId: conversation.id, session: conversation.session, after: this.contiguous },
        {
          messages: (messages) => this.ingest(messages, { announce: true }),
          typing: () => this.widget.setTyping(true),
          status: (frame) => {
            this.widget.setTyping(false);
            this.applyPending(frame.pending);
            this.applyConversationStatus(frame.status);
          },
          state: (state, retryAt) => {
            if (this.conversation && !this.conversation.closed) this.setStatus(state, { retryAt });
          },
          refused: (error) => this.fail(error),
        },
      );
      this.live.start(quiet);
      this.scheduleRefresh();
    }

    stopLive() {
      if (this.live) this.live.stop();
      this.live = null;
    }

    // ----------------------------------------------------------------------------------------- sessions

    adopt({ id, session, expiresAt, issuedAt }) {
      this.conversation = { id, session, expiresAt, issuedAt: issuedAt || new Date().toISOString(), closed: false };
      this.saveState();
    }

    /** Refresh when three quarters of the session's lifetime have passed. */
    scheduleRefresh() {
      clearTimeout(this.refreshTimer);
      const due = this.refreshDueAt();
      if (due === null) return;
      const delay = Math.min(2 ** 31 - 1, Math.max(0, due - Date.now())); // setTimeout's longest wait
      this.refreshTimer = setTimeout(() => this.refreshSession(), delay);
    }

    refreshDueAt() {
      if (!this.conversation || this.conversation.closed) return null;
      const issued = Date.parse(this.conversation.issuedAt);
      const expires = Date.parse(this.conversation.expiresAt);
      if (Number.isNaN(expires)) return null;
      return issued + (Math.max(0, expires - issued) * 3) / 4;
    }

    /** Timers sleep in background tabs: on coming back, refresh at once if it is due. */
    checkRefreshDue() {
      if (document.visibilityState !== 'visible') return;
      const due = this.refreshDueAt();
      if (due !== null && due <= Date.now()) this.refreshSession();
    }

    refreshSession() {
      clearTimeout(this.refreshTimer);
      const conversation = this.conversation;
      if (!conversation) return;
      this.enqueue(async () => {
        if (conversation !== this.conversation || conversation.closed) return;
        if (Date.parse(conversation.expiresAt) <= Date.now()) {
          this.fail(new AlliError('unauthorized', 'This chat session has expired.', 401));
          return;
        }
        this.stopLive(); // nothing may use the old session while it is being replaced
        try {
          const answer = await this.api.refresh(conversation.session, conversation.id);
          this.adopt({ id: conversation.id, session: answer.session, expiresAt: answer.session_expires_at });
          this.goLive(true);
        } catch (error) {
          if (isRefusal(error)) {
            this.fail(error);
          } else {
            this.goLive(true); // keeps the old session meanwhile; the next attempt comes shortly
            clearTimeout(this.refreshTimer);
            this.refreshTimer = setTimeout(() => this.refreshSession(), 5000);
          }
        }
      }).catch(() => undefined);
    }

    // ----------------------------------------------------------------------------------------- state

    /** A refusal (bad token, ended session…) or a failure to start: show it, report it, stop. */
    fail(error) {
      const detail = customerText(error, this.strings, this.english);
      debugWarn(`${error.code}: ${error.message}`);
      if (error.code === 'origin_not_allowed') {
        this.stopLive();
        clearTimeout(this.refreshTimer);
        this.blockedError = error;
        debugWarn(
          `this page's origin ${location.origin} is not allowed for this bot: ` +
            `add "${location.origin}" to allowed_origins in the bot's rejoinder.yaml and deploy it again.`,
        );
        this.setStatus('blocked', { detail });
      } else if (isRefusal(error)) {
        this.stopLive();
        clearTimeout(this.refreshTimer);
        this.persistence.clear();
        this.setStatus('expired', { detail });
      } else if (error.code === 'conversation_closed') {
        this.stopLive();
        this.setStatus('ended');
      } else if (!this.conversation) {
        this.setStatus(error.code === 'network_error' ? 'offline' : 'idle', { detail });
      }
      this.emit('error', error);
    }

    setStatus(status, { detail, retryAt } = {}) {
      if (status !== this.status) debug('status', status, detail || '');
      this.lastDetail = detail;
      if (this.widget) this.widget.showState(status, { detail, retryAt });
      if (status === this.status) return;
      this.status = status;
      this.emit('status', status);
    }

    /** Drop the current conversation from the screen and storage (the server keeps it). */
    beginNew() {
      this.forget();
      if (this.widget) this.widget.clear();
    }

    forget() {
      this.stopLive();
      clearTimeout(this.refreshTimer);
      this.persistence.clear();
      this.conversation = null;
      this.resumed = null;
      this.seen = new Set();
      this.latest = null;
      this.contiguous = 0;
      this.pending = undefined;
    }

    saveState() {
      const conversation = this.conversation;
      if (!conversation || conversation.closed) return;
      this.persistence.save({
        conversationId: conversation.id,
        session: conversation.session,
        issuedAt: conversation.issuedAt,
        expiresAt: conversation.expiresAt,
        lastSeq: this.contiguous,
        open: Boolean(this.widget && this.widget.isOpen),
        resume: this.resumed ? { token: this.resumed.token, text: this.resumed.text } : undefined,
      });
    }

    // ----------------------------------------------------------------------------------------- events

    emit(name, value) {
      for (const listener of this.listeners.get(name) || []) {
        try {
          listener(value);
        } catch (error) {
          setTimeout(() => {
            throw error; // a page's listener failing must not break the widget, but should still be seen
          });
        }
      }
    }
  }

  // ------------------------------------------------------------------------------------------- window.Alli

  let chat = null;

  const notInitialized = () =>
    new AlliError('not_initialized', 'Call Alli.initialize({sdkKey: "pk_…"}) before using the chat.');

  /** Run `action` with the chat, or reject because initialize() has not been called. */
  const withChat = (action) => (chat ? action(chat) : Promise.reject(notInitialized()));

  /** The customer as POST /v1/conversations takes it: id (as text), name and hash; other fields are not sent. */
  function userFields(user) {
    const fields = {};
    for (const name of ['id', 'name', 'hash']) {
      if (user[name] !== undefined && user[name] !== null) fields[name] = String(user[name]);
    }
    return fields;
  }

  // Options this SDK knows; Alli's others are ignored with a debug warning.
  const KNOWN_OPTIONS = [
    'sdkKey', 'apiKey', 'server', 'launcher', 'popupMode', 'placement', 'title', 'user', 'variables', 'locale',
    'persist', 'debug', 'backButton', 'providerLink', 'styleOptions',
  ];
  const PLACEMENTS = ['bottom-right', 'bottom-left', 'top-right', 'top-left'];

  /** A pixel offset of styleOptions: a number or "50px"; anything else is ignored. */
  function pixels(value, name) {
    if (value === undefined) return undefined;
    const number = typeof value === 'number' ? value : parseFloat(String(value));
    if (Number.isFinite(number) && number >= 0 && number <= 2000) return number;
    debugWarn(`styleOptions.conversationContainer.${name} must be a number of pixels; ignored:`, value);
    return undefined;
  }

  /** `styleOptions.conversationContainer {right, left, bottom}`: the side given by the placement. */
  function offsetsOf(styleOptions, placement) {
    const offsets = {};
    if (!styleOptions || typeof styleOptions !== 'object') return offsets;
    for (const name of Object.keys(styleOptions)) {
      if (name !== 'conversationContainer') debugWarn(`styleOptions.${name} is not supported; ignored.`);
    }
    const container = styleOptions.conversationContainer || {};
    const side = placement.endsWith('left') ? 'left' : 'right';
    offsets.x = pixels(container[side], side);
    offsets.bottom = pixels(container.bottom, 'bottom');
    for (const name of Object.keys(container)) {
      if (!['right', 'left', 'bottom'].includes(name)) {
        debugWarn(`styleOptions.conversationContainer.${name} is not supported; ignored.`);
      }
    }
    return offsets;
  }

  /** What setUser / setUserId / setPlacement said before initialize(), and since. */
  const presets = { user: undefined, variables: undefined, placement: undefined };

  function checkedOptions(options) {
    const given = options && typeof options === 'object' ? options : {};
    debugging = Boolean(given.debug);
    const sdkKey = given.sdkKey || given.apiKey;
    if (typeof sdkKey !== 'string' || !sdkKey) {
      throw new AlliError('invalid_options', 'Alli.initialize needs {sdkKey: "pk_…"}, the bot\'s SDK key.');
    }
    for (const name of Object.keys(given)) {
      if (!KNOWN_OPTIONS.includes(name)) debugWarn(`the option ${name} is not supported; ignored.`);
    }
    const persist = given.persist === undefined ? 'session' : given.persist;
    if (!['session', 'local', 'none'].includes(persist)) {
      throw new AlliError('invalid_options', 'persist must be "session", "local" or "none".');
    }
    const server = String(given.server || defaultServer()).replace(/\/+$/, '');
    if (!isHttpUrl(server)) throw new AlliError('invalid_options', `server must be an http(s) URL, not ${server}.`);
    let placement = presets.placement || given.placement || 'bottom-right';
    if (!PLACEMENTS.includes(placement)) {
      debugWarn(`placement must be one of ${PLACEMENTS.join(', ')}; using bottom-right.`);
      placement = 'bottom-right';
    }
    const user = presets.user || (given.user ? userFields(given.user) : undefined);
    const variables = { ...(given.variables || {}), ...(presets.variables || {}) };
    return {
      sdkKey,
      server,
      launcher: given.launcher !== false,
      popupMode: Boolean(given.popupMode),
      placement,
      title: given.title ? String(given.title) : '',
      user,
      variables: Object.keys(variables).length ? variables : undefined,
      locale: given.locale ? String(given.locale) : undefined,
      persist,
      backButton: Boolean(given.backButton),
      providerLink: given.providerLink === undefined ? true : given.providerLink,
      offsets: offsetsOf(given.styleOptions, placement),
    };
  }

  const Alli = {
    __rejoinder: true,

    /**
     * Set the widget up for a bot. Call once per page (call destroy() first to start over).
     * @param {{sdkKey?: string, apiKey?: string, server?: string, launcher?: boolean, popupMode?: boolean,
     *   placement?: string, user?: {id?: string, name?: string, hash?: string}, variables?: object,
     *   locale?: string, persist?: 'session'|'local'|'none', title?: string, debug?: boolean,
     *   backButton?: boolean, providerLink?: boolean|string,
     *   styleOptions?: {conversationContainer?: {right?: number, left?: number, bottom?: number}}}} options
     * @returns {Promise<void>} settles when the widget is ready: the bot's settings read and an earlier page's
     *   conversation, if any, back on screen
     */
    initialize(options) {
      if (chat) {
        return Promise.reject(
          new AlliError(
            'already_initialized',
            'Alli is already initialized; call Alli.destroy() before initializing again.',
          ),
        );
      }
      let checked;
      try {
        checked = checkedOptions(options);
      } catch (error) {
        return Promise.reject(error);
      }
      debug('initialize', { server: checked.server, placement: checked.placement, persist: checked.persist });
      chat = new Chat(checked);
      const current = chat;
      return chat.enqueue(() => current.mount());
    },

    /**
     * Start a new conversation with the skill that `name` triggers, and open the window. With no name, the
     * bot's welcome event (its `welcome_event` setting); a bot with no skill for it waits for a first message.
     * @param {string} [name] @param {object} [variables] values for the skill's settable variables
     * @returns {Promise<object|null>} the server's answer (null when waiting for the first message)
     */
    event(name, variables) {
      const event = name === undefined || name === null || name === '' ? undefined : String(name);
      return withChat((c) => c.event(event, variables));
    },

    /**
     * Who the customer is, for the conversations started from now on: `{id, name, hash, variables}`
     * (`hash` = HMAC-SHA256 of `id` by the business's backend; `variables` for the skill's settable variables).
     * @param {{id?: string, name?: string, hash?: string, variables?: object}} user
     */
    setUser(user) {
      const given = user && typeof user === 'object' ? user : {};
      presets.user = userFields(given);
      presets.variables = given.variables && typeof given.variables === 'object' ? { ...given.variables } : undefined;
      if (chat) {
        chat.options.user = presets.user;
        chat.options.variables = { ...(chat.options.variables || {}), ...(presets.variables || {}) };
      }
      debug('user', { id: presets.user.id, name: presets.user.name });
    },

    /** The customer's id alone (a hash given for another id is dropped). @param {string} id */
    setUserId(id) {
      const current = (chat ? chat.options.user : presets.user) || {};
      const next = { ...current, id: String(id) };
      if (current.id !== next.id) delete next.hash;
      presets.user = next;
      if (chat) chat.options.user = next;
    },

    /** Where the launcher and window sit: bottom-right, bottom-left, top-right or top-left. @param {string} p */
    setPlacement(placement) {
      if (!PLACEMENTS.includes(placement)) {
        debugWarn(`placement must be one of ${PLACEMENTS.join(', ')}; ignored:`, placement);
        return;
      }
      presets.placement = placement;
      if (chat) {
        chat.options.placement = placement;
        if (chat.widget) chat.widget.setPlacement(placement);
      }
    },

    /** The customer as set by initialize, setUser or setUserId (a frozen copy; `hash` is not shown). */
    get user() {
      const user = (chat ? chat.options.user : presets.user) || {};
      const variables = (chat ? chat.options.variables : presets.variables) || {};
      return Object.freeze({ id: user.id, name: user.name, variables: Object.freeze({ ...variables }) });
    },

    /**
     * Add or complete a language of the widget's own strings (keys as in English; missing ones stay English).
     * Call before initialize({locale: code}).
     * @param {string} code e.g. "fr" or "pt-BR" @param {object} strings
     */
    addLocale(code, strings) {
      LOCALES[String(code)] = { ...(LOCALES[String(code)] || {}), ...strings };
    },

    /**
     * Resume the conversation a token was issued for: its whole history and pending question.
     * @param {string} token a conversation token (`rjt_…`)
     * @param {{launcher?: boolean, popupMode?: boolean}} [options] popupMode opens it at once in full window
     * @returns {Promise<object>} the server's answer; rejects with `code` token_expired, token_revoked…
     */
    __startConversation(token, options) {
      return withChat((c) => c.startConversation(String(token), options || {}));
    },

    /**
     * Send `text` as the customer into the current conversation (or start one with it).
     * @param {string} text
     * @returns {Promise<object>} the server's answer: the customer's message and the bot's replies
     */
    __sendChat(text) {
      return withChat((c) => c.sendChat(text));
    },

    /** Open the chat window. */
    open() {
      if (chat) chat.open();
    },

    /** Close the chat window; the conversation goes on. */
    close() {
      if (chat) chat.close();
    },

    /** Remove the widget and forget the conversation on this page; initialize() may be called again. */
    destroy() {
      if (chat) chat.destroy();
      chat = null;
    },

    /** Forget the conversation; the next event or message starts a new one. */
    reset() {
      if (chat) chat.reset();
    },

    /**
     * Listen to `message`, `open`, `close`, `conversation` (its id), `status` or `error`.
     * @param {string} name @param {Function} listener
     */
    on(name, listener) {
      if (!chat) throw notInitialized();
      if (!EVENTS.includes(name)) {
        throw new AlliError('invalid_event', `Unknown event ${name}; use one of ${EVENTS.join(', ')}.`);
      }
      chat.listeners.get(name).add(listener);
    },

    /** Stop listening. @param {string} name @param {Function} listener */
    off(name, listener) {
      if (chat && chat.listeners.has(name)) chat.listeners.get(name).delete(listener);
    },

    /** The connection state: idle, connecting, online, offline, expired or ended. */
    get status() {
      return chat ? chat.status : 'idle';
    },
  };

  Alli.startConversation = Alli.__startConversation;
  Alli.sendChat = Alli.__sendChat;
  window.Alli = Alli;
})();
