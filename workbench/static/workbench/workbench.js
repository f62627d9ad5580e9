/* dealerloop workbench H5 pages (lead, consultation, handover), opened from WeCom text cards.
 *
 * Login: WeCom OAuth2 snsapi_base. The page stores a random `state` in sessionStorage and goes
 * to WeCom's authorize page, which comes back with ?code=&state=; the code is taken out of the
 * address bar at once (a reload never sends a spent code again) and exchanged only when the
 * state is the one stored, through the workbench's own POST /auth/login. The corp, agent and
 * app key are those of the app the card was sent through (the server reads the link's `app`). The tokens live in
 * sessionStorage (this WebView only), never in the address or a log; POST /auth/refresh renews
 * them, and when that fails the page logs in through WeCom again.
 *
 * Everything from the API is written with textContent: no HTML is ever parsed from data.
 */
(function () {
  "use strict";

  var cfg = document.body.dataset;
  var API = cfg.api;
  var STORE = "dealerloop.workbench.";
  var STATE_KEY = STORE + "oauth_state";
  var TOKENS_KEY = STORE + "tokens";
  var app = document.getElementById("app");

  // ------------------------------------------------------------------ labels
  var LEAD_TYPE = {
    new_car: "新车意向", used_car: "二手车意向", trade_in: "置换估价",
    loan: "分期贷款", insurance: "保险报价", accident: "出险报案",
  };
  var LEAD_STATUS = { new: "待联系", contacted: "已联系", appointment: "已约到店", won: "已成交", lost: "已战败" };
  // What the API accepts from each status (backend/leads/service.py TRANSITIONS); it decides.
  var LEAD_NEXT = {
    new: ["contacted", "appointment", "won", "lost"],
    contacted: ["appointment", "won", "lost"],
    appointment: ["contacted", "appointment", "won", "lost"],
    won: [], lost: [],
  };
  var LEAD_ACTION = { contacted: "标记已联系", appointment: "约到店", won: "成交", lost: "战败" };
  var ROUTED_BY = {
    assigned_advisor: "专属顾问", round_robin: "轮流分配", store_manager: "门店经理", manual: "手动分配", none: "未分配",
  };
  var HISTORY = { lead_created: "线索创建", lead_assigned: "分配顾问", lead_status_changed: "状态变更", lead_escalated: "超时升级" };
  var TOPIC = { new_car: "新车", used_car: "二手车", service: "维修保养", insurance: "保险", finance: "金融", other: "其他" };
  var HANDOVER_KIND = { resigned: "离职继承", on_duty: "在职转接" };
  var HANDOVER_STATUS = { collecting: "读取客户中", submitting: "提交中", polling: "等待企业微信结果", finished: "已完成" };
  var ITEM_STATUS = {
    pending: "待提交", waiting: "等待接替", done: "接替成功", refused: "客户拒绝",
    limit: "接替顾问客户数已达上限", no_record: "无接替记录", rejected: "企业微信拒绝转接",
    quota_exceeded: "90 天内已在职转接 2 次", left_over: "超出本次上限，待下次交接",
  };
  var ITEM_FAILED = ["refused", "limit", "no_record", "rejected", "quota_exceeded"];

  // ------------------------------------------------------------------ DOM helpers (text only)
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function append(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }
  function field(list, label, value) {
    if (value === undefined || value === null || value === "") return;
    append(list, el("dt", null, label), el("dd", null, value));
  }
  function show() {
    app.replaceChildren.apply(app, arguments);
  }
  function time(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleString("zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hour12: false,
    });
  }
  function notice(text, kind) {
    return el("p", "notice" + (kind ? " " + kind : ""), text);
  }
  function button(text, onClick) {
    var b = el("button", "btn", text);
    b.type = "button";
    if (onClick) b.addEventListener("click", onClick);
    return b;
  }
  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ------------------------------------------------------------------ errors
  function Stop(message, code) {
    this.message = message;
    this.code = code || "";
  }
  // The API's error (one format: code, status, message) as a sentence for the advisor.
  function apiError(status, body) {
    var code = (body && body.code) || "";
    if (status === 404 && /not_found$/.test(code)) return new Stop("未找到该记录，或您无权查看。", code);
    if (status === 403) return new Stop((body && body.message) || "您没有权限执行此操作。", code);
    if (status >= 500 || !code) return new Stop("服务暂时不可用，请稍后重试。", code);
    return new Stop((body && body.message) || "操作未成功。", code);
  }
  function showStop(stop, retry) {
    var box = el("section", "card error");
    append(box, el("p", "error-text", stop.message));
    if (stop.code) append(box, el("p", "code", "错误码：" + stop.code));
    if (retry) append(box, button("重新登录", retry));
    show(box);
  }

  // ------------------------------------------------------------------ tokens and login
  function loadTokens() {
    try {
      return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
    } catch (e) {
      return null;
    }
  }
  function saveTokens(answer, previous) {
    var tokens = {
      access: answer.access_token,
      refresh: answer.refresh_token,
      expiresAt: Date.now() + answer.expires_in * 1000,
      staffId: answer.staff_id !== undefined ? answer.staff_id : previous && previous.staffId,
      name: answer.name !== undefined ? answer.name : previous && previous.name,
    };
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
    document.getElementById("who").textContent = tokens.name || "";
    return tokens;
  }
  function goToWeCom() {
    var state = randomId();
    sessionStorage.setItem(STATE_KEY, state);
    var back = new URL(location.href);
    back.searchParams.delete("code");
    back.searchParams.delete("state");
    back.hash = "";
    var query = new URLSearchParams({
      appid: cfg.corpId,
      redirect_uri: back.toString(),
      response_type: "code",
      scope: "snsapi_base",
      state: state,
      agentid: cfg.agentId,
    });
    location.replace(cfg.authorize + "?" + query.toString() + "#wechat_redirect");
    return new Promise(function () {}); // the page is leaving
  }
  function relogin() {
    sessionStorage.removeItem(TOKENS_KEY);
    goToWeCom();
  }

  var justLoggedIn = false;

  async function signIn() {
    var url = new URL(location.href);
    var code = url.searchParams.get("code");
    var state = url.searchParams.get("state");
    if (code !== null || state !== null) {
      url.searchParams.delete("code");
      url.searchParams.delete("state");
      // The browser keeps the authorize URL's #wechat_redirect across the redirect: dropped too.
      history.replaceState(history.state, "", url.pathname + url.search);
      var expected = sessionStorage.getItem(STATE_KEY);
      sessionStorage.removeItem(STATE_KEY); // one state, one answer
      if (!code || !expected || state !== expected) {
        // Not the answer to our own redirect (a forged or replayed link): the code is never used.
        if (loadTokens()) return;
        throw new Stop("登录校验失败（state 不一致），已拒绝此次登录。请从企业微信重新打开。", "oauth.state_mismatch");
      }
      var res = await fetch(API + "/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        // The app this page logged in through (the card's): only its token can exchange the code.
        body: JSON.stringify({ code: code, app: cfg.app }),
      });
      var body = await res.json().catch(function () { return null; });
      if (!res.ok) throw apiError(res.status, body);
      saveTokens(body);
      justLoggedIn = true;
      return;
    }
    var tokens = loadTokens();
    if (tokens) {
      document.getElementById("who").textContent = tokens.name || "";
      return;
    }
    await goToWeCom();
  }

  // One refresh at a time: a refresh token is rotated on use, so two calls renewing at once
  // would spend it twice.
  var refreshing = null;
  function refreshTokens(tokens) {
    if (!refreshing) {
      refreshing = (async function () {
        var res = await fetch(API + "/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: tokens.refresh }),
        });
        return res.ok ? saveTokens(await res.json(), tokens) : null;
      })().finally(function () { refreshing = null; });
    }
    return refreshing;
  }

  // One call to the workbench API with the Bearer token; an expired token is renewed once.
  async function api(method, path, payload) {
    var tokens = loadTokens();
    if (!tokens) await goToWeCom();
    if (Date.now() >= tokens.expiresAt - 10000) tokens = (await refreshTokens(tokens)) || tokens;
    var res = await send(method, path, payload, tokens);
    if (res.status === 401) {
      var current = loadTokens();
      // Renewed meanwhile by another call: use those; else renew now.
      var renewed = current && current.access !== tokens.access ? current : await refreshTokens(current || tokens);
      if (renewed) {
        res = await send(method, path, payload, renewed);
      } else if (!justLoggedIn) {
        relogin();
        await new Promise(function () {});
      }
    }
    var body = await res.json().catch(function () { return null; });
    if (!res.ok) throw apiError(res.status, body);
    return body;
  }
  function send(method, path, payload, tokens) {
    var init = { method: method, headers: { Authorization: "Bearer " + tokens.access } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(API + path, init);
  }

  // The caller's roles (GET /me), read once per page load. They only decide which actions the
  // page offers: the API still decides, and its refusal is shown as it is.
  var MANAGER_ROLES = ["store_manager", "region_manager", "division_manager", "group_admin"];
  var meOnce = null;
  function whoAmI() {
    if (!meOnce) meOnce = api("GET", "/me").catch(function (err) { meOnce = null; throw err; });
    return meOnce;
  }
  function hasRole(who, roles) {
    return (who.roles || []).some(function (r) { return roles.indexOf(r) >= 0; });
  }
  // A <select> of staff (id, name), or the API's refusal to list them as a sentence.
  async function staffPicker(path, keep) {
    var staff;
    try {
      staff = await api("GET", path);
    } catch (err) {
      if (!(err instanceof Stop)) err = new Stop("网络异常，请重试。");
      return notice(err.message + (err.code ? "（" + err.code + "）" : ""), "error-text");
    }
    var select = el("select");
    (staff.items || staff).filter(keep).forEach(function (s) {
      var option = el("option", null, s.name);
      option.value = String(s.id);
      select.appendChild(option);
    });
    return select;
  }

  // A form action: the button waits, the outcome is said under the form.
  function action(outcome, buttons, run) {
    return async function () {
      buttons.forEach(function (b) { b.disabled = true; });
      outcome.textContent = "提交中…";
      outcome.className = "outcome";
      try {
        await run();
      } catch (err) {
        if (!(err instanceof Stop)) err = new Stop("网络异常，请重试。");
        outcome.textContent = err.message + (err.code ? "（" + err.code + "）" : "");
        outcome.className = "outcome error-text";
        buttons.forEach(function (b) { b.disabled = false; });
      }
    };
  }

  // ------------------------------------------------------------------ lead
  async function showLead(id) {
    var lead = await api("GET", "/leads/" + id);
    var head = el("section", "card");
    var title = el("h2", null, LEAD_TYPE[lead.type] || lead.type);
    if (lead.priority === "high") append(title, el("span", "tag urgent", "紧急"));
    append(title, el("span", "tag status-" + lead.status, LEAD_STATUS[lead.status] || lead.status));
    if (lead.overdue) append(title, el("span", "tag urgent", "已超时"));
    var facts = el("dl", "facts");
    field(facts, "客户", lead.customer_name || "（未留名）");
    field(facts, "来源", (LEAD_TYPE[lead.type] || lead.type) + " · " + (ROUTED_BY[lead.routed_by] || lead.routed_by || ""));
    field(facts, "联系时限", time(lead.contact_due_at));
    field(facts, "提交时间", time(lead.created_at));
    field(facts, "已联系", time(lead.contacted_at));
    field(facts, "预约到店", time(lead.appointment_at));
    field(facts, "期望时间", time(lead.preferred_time));
    field(facts, "地点", lead.location && lead.location.address);
    var asks = [];
    if (lead.tow_requested) asks.push("请求拖车");
    if (lead.repair_booking_requested) asks.push("请求预约维修");
    if (lead.injuries) asks.push("有人员受伤");
    if (lead.drivable === false) asks.push("车辆无法行驶");
    field(facts, "情况", asks.join("，"));
    field(facts, "照片", lead.photos && lead.photos.length ? lead.photos.length + " 张" : "");
    field(facts, "客户留言", lead.note);
    field(facts, "战败原因", lead.lost_reason);
    append(head, title, facts);

    var next = LEAD_NEXT[lead.status] || [];
    var form = null;
    if (next.length) form = leadForm(lead, next);

    var history = el("section", "card");
    append(history, el("h3", null, "跟进记录"));
    var list = el("ol", "timeline");
    (lead.history || []).forEach(function (h) {
      var item = el("li");
      var p = h.payload || {};
      var what = HISTORY[h.kind] || h.kind;
      if (h.kind === "lead_status_changed") what += "：" + (LEAD_STATUS[p.from] || p.from) + " → " + (LEAD_STATUS[p.to] || p.to);
      if (h.kind === "lead_assigned" && h.advisor_name) {
        what += "：" + (h.previous_advisor_name ? h.previous_advisor_name + " → " : "") + h.advisor_name;
      }
      append(item, el("span", "when", time(h.occurred_at)), el("span", "what", what));
      if (p.note) append(item, el("p", "note", p.note));
      if (p.lost_reason) append(item, el("p", "note", "战败原因：" + p.lost_reason));
      list.appendChild(item);
    });
    if (!list.children.length) list.appendChild(el("li", "muted", "暂无记录"));
    append(history, list);
    var who = await whoAmI();
    var reassign = null;
    if (next.length && hasRole(who, MANAGER_ROLES)) reassign = await reassignForm(lead);
    show(head, form, reassign, history);
  }

  // Managers give the lead to another active staff member of its store (the timeout card goes to them).
  async function reassignForm(lead) {
    var form = el("section", "card");
    append(form, el("h3", null, "改派顾问"));
    // The store's staff as the manager's scope shows them (GET /staff); the API checks the choice.
    var select = await staffPicker("/staff?org_unit_id=" + lead.store_id, function (s) {
      return s.status === "active" && s.id !== lead.advisor_id;
    });
    if (select.tagName !== "SELECT") return append(form, select);
    select.id = "lead-reassign-to";
    select.setAttribute("aria-label", "改派给");
    if (!select.options.length) return append(form, notice("本店暂无可改派的员工。"));
    var outcome = el("p", "outcome");
    var go = button("改派", null);
    go.addEventListener("click", action(outcome, [go], async function () {
      var chosen = select.options[select.selectedIndex];
      await api("POST", "/leads/" + lead.id + "/reassign", { advisor_id: Number(select.value) });
      await showLead(lead.id);
      app.prepend(notice("已改派给 " + chosen.textContent, "ok"));
    }));
    return append(form, select, append(el("div", "actions"), go), outcome);
  }

  function leadForm(lead, next) {
    var form = el("section", "card");
    append(form, el("h3", null, "跟进"));
    var note = el("textarea");
    note.id = "lead-note";
    note.maxLength = 500;
    note.placeholder = "跟进内容（可选），如：已电话联系，客户周六到店";
    note.setAttribute("aria-label", "跟进内容");
    var when = el("input");
    when.type = "datetime-local";
    when.id = "lead-appointment";
    var reason = el("input");
    reason.type = "text";
    reason.id = "lead-lost-reason";
    reason.maxLength = 255;
    reason.placeholder = "战败原因（战败时必填）";
    reason.setAttribute("aria-label", "战败原因");
    var outcome = el("p", "outcome");
    var buttons = [];
    var row = el("div", "actions");
    next.forEach(function (status) {
      var b = button(LEAD_ACTION[status], null);
      if (status === "lost") b.classList.add("secondary");
      b.dataset.status = status;
      buttons.push(b);
      row.appendChild(b);
    });
    buttons.forEach(function (b) {
      b.addEventListener("click", action(outcome, buttons, async function () {
        var body = { status: b.dataset.status, version: lead.version };
        if (note.value.trim()) body.note = note.value.trim();
        if (body.status === "appointment") {
          if (!when.value) throw new Stop("请选择预约到店时间。");
          body.appointment_at = new Date(when.value).toISOString();
        }
        if (body.status === "lost") {
          if (!reason.value.trim()) throw new Stop("请填写战败原因。");
          body.lost_reason = reason.value.trim();
        }
        await api("POST", "/leads/" + lead.id + "/status", body);
        await showLead(lead.id);
        app.prepend(notice("已保存：" + LEAD_STATUS[body.status], "ok"));
      }));
    });
    var whenLabel = el("label", null, "预约到店时间");
    whenLabel.appendChild(when);
    append(form, note, whenLabel, reason, row, outcome);
    return form;
  }

  // ------------------------------------------------------------------ consultation
  function messageItem(m) {
    var bubble = el("li", "msg " + (m.sender === "staff" ? "mine" : "theirs"));
    var text = m.kind === "text" ? m.text : { image: "[图片]", car_card: "[车辆卡片]", booking_card: "[预约卡片]" }[m.kind];
    append(bubble, el("p", "text", text || ""), el("span", "when", time(m.created_at)));
    return bubble;
  }
  async function showConsult(id) {
    var conversation = await api("GET", "/consult/conversations/" + id);
    var messages = [];
    for (var after = 0; ;) {
      var page = await api("GET", "/consult/conversations/" + id + "/messages?limit=100&after_id=" + after);
      messages = messages.concat(page.items);
      if (page.items.length < 100) break;
      after = page.items[page.items.length - 1].id;
    }
    var me = (loadTokens() || {}).staffId;
    var head = el("section", "card");
    var title = el("h2", null, conversation.customer_name || "客户");
    append(title, el("span", "tag", TOPIC[conversation.topic] || conversation.topic));
    append(title, el("span", "tag status-" + conversation.status, conversation.status === "open" ? "进行中" : "已结束"));
    if (conversation.overdue) append(title, el("span", "tag urgent", "已超时"));
    var facts = el("dl", "facts");
    field(facts, "接待顾问", conversation.advisor ? conversation.advisor.name : "待接待");
    field(facts, "发起时间", time(conversation.created_at));
    field(facts, "待回复自", time(conversation.awaiting_since));
    field(facts, "回复时限", time(conversation.due_at));
    append(head, title, facts);

    var outcome = el("p", "outcome");
    var claim = null;
    if (!conversation.advisor && conversation.status === "open") {
      claim = button("接待", null);
      claim.addEventListener("click", action(outcome, [claim], async function () {
        await api("POST", "/consult/conversations/" + id + "/claim", {});
        await showConsult(id);
        app.prepend(notice("已接待", "ok"));
      }));
      append(head, append(el("div", "actions"), claim), outcome);
    }

    var thread = el("section", "card");
    var list = el("ol", "messages");
    messages.forEach(function (m) { list.appendChild(messageItem(m)); });
    if (!messages.length) list.appendChild(el("li", "muted", "暂无消息"));
    append(thread, list);

    var reply = null;
    if (conversation.status === "open") {
      reply = el("section", "card");
      var box = el("textarea");
      box.id = "consult-reply";
      box.placeholder = conversation.advisor ? "回复客户" : "回复客户（发送即接待）";
      box.setAttribute("aria-label", "回复内容");
      var replyOutcome = el("p", "outcome");
      var sendButton = button("发送", null);
      var clientId = randomId(); // the same message when a tap is retried
      sendButton.addEventListener("click", action(replyOutcome, [sendButton], async function () {
        if (!box.value.trim()) throw new Stop("请输入回复内容。");
        await api("POST", "/consult/conversations/" + id + "/messages", { kind: "text", text: box.value, client_id: clientId });
        await showConsult(id);
        app.prepend(notice("已发送", "ok"));
      }));
      var reload = button("刷新", function () {
        showConsult(id).catch(function (err) { replyOutcome.textContent = err instanceof Stop ? err.message : "网络异常，请重试。"; });
      });
      reload.classList.add("plain");
      append(reply, box, append(el("div", "actions"), sendButton, reload), replyOutcome);
    } else {
      append(thread, notice("会话已结束。"));
    }
    var manage = await consultActions(conversation);
    show(head, thread, reply, manage);
    var last = messages.length ? messages[messages.length - 1] : null;
    var assignee = !!conversation.advisor && conversation.advisor.id === me;
    watchMessages(id, list, last ? last.id : 0, messages.length, assignee);
    if (conversation.advisor && conversation.advisor.id === me && conversation.unread && last) {
      // The owner sees a read receipt; a failure here leaves the page as it is.
      api("POST", "/consult/conversations/" + id + "/read", { up_to_message_id: last.id }).catch(function () {});
    }
  }

  // Transfer, close, reopen: offered to the assignee and managers (and to anyone while nobody
  // holds the conversation, as the API allows); the API decides and its refusal is shown.
  async function consultActions(conversation) {
    var who = await whoAmI();
    var manager = hasRole(who, MANAGER_ROLES);
    var mine = conversation.advisor && conversation.advisor.id === who.id;
    if (conversation.advisor && !mine && !manager) return null;
    var id = conversation.id;
    var card = el("section", "card");
    append(card, el("h3", null, "会话处理"));
    var outcome = el("p", "outcome");
    var row = el("div", "actions");
    var buttons = [];
    if (conversation.status === "open") {
      if (conversation.advisor) {
        var select = await staffPicker("/consult/conversations/" + id + "/transfer-targets", function () { return true; });
        if (select.tagName !== "SELECT") append(card, select);
        else if (select.options.length) {
          select.id = "consult-transfer-to";
          select.setAttribute("aria-label", "转接给");
          var transfer = button("转接", null);
          buttons.push(transfer);
          transfer.addEventListener("click", action(outcome, buttons, async function () {
            var chosen = select.options[select.selectedIndex];
            await api("POST", "/consult/conversations/" + id + "/transfer", { advisor_id: Number(select.value) });
            var done = notice("已转接给 " + chosen.textContent, "ok");
            // An advisor who handed it on no longer sees it: the page then says only that.
            await showConsult(id).then(function () { app.prepend(done); }, function () {
              stopWatching();
              show(done);
            });
          }));
          append(card, select);
          row.appendChild(transfer);
        }
      }
      var close = button("结束会话", null);
      close.classList.add("secondary");
      buttons.push(close);
      close.addEventListener("click", action(outcome, buttons, async function () {
        await api("POST", "/consult/conversations/" + id + "/close", {});
        await showConsult(id);
        app.prepend(notice("会话已结束", "ok"));
      }));
      row.appendChild(close);
    } else {
      var reopen = button("重新打开", null);
      buttons.push(reopen);
      reopen.addEventListener("click", action(outcome, buttons, async function () {
        await api("POST", "/consult/conversations/" + id + "/reopen", {});
        await showConsult(id);
        app.prepend(notice("会话已重新打开", "ok"));
      }));
      row.appendChild(reopen);
    }
    return append(card, row, outcome);
  }

  // New messages while the page is visible: one request at a time, every POLL_MS after the last
  // answer; nothing while hidden (the WebView in the background), at once when shown again.
  var POLL_MS = 5000;
  var watching = null;
  function watchMessages(id, list, afterId, count, assignee) {
    if (watching) clearTimeout(watching.timer);
    watching = { id: id, list: list, after: afterId, count: count, assignee: assignee, timer: null, busy: false };
    schedulePoll(POLL_MS);
  }
  function stopWatching() {
    if (watching) clearTimeout(watching.timer);
    watching = null;
  }
  function schedulePoll(delay) {
    var w = watching;
    if (!w) return;
    clearTimeout(w.timer);
    w.timer = null;
    if (document.visibilityState === "visible" && !w.busy) w.timer = setTimeout(function () { pollMessages(w); }, delay);
  }
  async function pollMessages(w) {
    if (w !== watching || w.busy || document.visibilityState !== "visible") return;
    w.busy = true;
    try {
      var page = await api("GET", "/consult/conversations/" + w.id + "/messages?limit=100&after_id=" + w.after);
      if (w !== watching) return; // the page was drawn again meanwhile: its own watch goes on
      if (page.items.length && !w.count) w.list.replaceChildren();
      var fromOwner = false;
      page.items.forEach(function (m) {
        w.list.appendChild(messageItem(m));
        w.after = m.id;
        w.count += 1;
        if (m.sender !== "staff") fromOwner = true;
      });
      if (fromOwner && w.assignee) {
        // The assignee has it on screen: the owner sees the read receipt, as on opening the page.
        api("POST", "/consult/conversations/" + w.id + "/read", { up_to_message_id: w.after }).catch(function () {});
      }
    } catch (err) {
      // A failed poll is tried again at the next turn; the page stays as it is.
    } finally {
      w.busy = false;
    }
    if (w === watching) schedulePoll(POLL_MS);
  }
  document.addEventListener("visibilitychange", function () {
    if (!watching) return;
    if (document.visibilityState === "visible") schedulePoll(0);
    else {
      clearTimeout(watching.timer);
      watching.timer = null;
    }
  });

  // ------------------------------------------------------------------ handover
  async function showHandover(id) {
    var handover = await api("GET", "/wecom/handovers/" + id);
    var head = el("section", "card");
    var title = el("h2", null, HANDOVER_KIND[handover.kind] || handover.kind);
    append(title, el("span", "tag status-" + handover.status, HANDOVER_STATUS[handover.status] || handover.status));
    var facts = el("dl", "facts");
    field(facts, "原顾问", (handover.handover_staff_name || "") + "（" + handover.handover_userid + "）");
    field(facts, "接替顾问", (handover.takeover_staff_name || "") + "（" + handover.takeover_userid + "）");
    field(facts, "发起时间", time(handover.created_at));
    field(facts, "完成时间", time(handover.finished_at));
    var counts = Object.keys(handover.counts || {}).map(function (k) {
      return (ITEM_STATUS[k] || k) + " " + handover.counts[k];
    });
    field(facts, "客户", handover.items.length + " 位（" + counts.join("，") + "）");
    field(facts, "失败", handover.failed ? handover.failed + " 位" : "");
    append(head, title, facts);
    if (handover.list_incomplete) append(head, notice("企业微信的待分配客户列表未读完，请再次发起交接。", "warn"));
    if (handover.left_over) append(head, notice("另有 " + handover.left_over + " 位客户超出本次上限，请再次发起交接。", "warn"));

    var results = el("section", "card");
    append(results, el("h3", null, "逐个客户结果"));
    var failedFirst = handover.items.slice().sort(function (a, b) {
      return (ITEM_FAILED.indexOf(b.status) >= 0) - (ITEM_FAILED.indexOf(a.status) >= 0);
    });
    var list = el("ol", "items");
    failedFirst.forEach(function (item) {
      var failed = ITEM_FAILED.indexOf(item.status) >= 0;
      var row = el("li", failed ? "failed" : item.status === "done" ? "done" : "");
      var who = item.customer_name || (item.customer_id ? "客户 #" + item.customer_id : "外部联系人 " + item.external_userid);
      append(row, el("span", "who", who), el("span", "tag", ITEM_STATUS[item.status] || item.status));
      if (item.takeover_time) append(row, el("span", "when", time(item.takeover_time)));
      list.appendChild(row);
    });
    if (!handover.items.length) list.appendChild(el("li", "muted", "暂无客户"));
    append(results, list);
    show(head, results);
  }

  // ------------------------------------------------------------------ start
  var PAGES = { leads: showLead, consult: showConsult, handovers: showHandover };

  async function main() {
    try {
      await signIn();
      show(el("p", "status", "加载中…"));
      await PAGES[cfg.kind](Number(cfg.id));
    } catch (err) {
      if (err instanceof Stop) {
        showStop(err, err.code === "oauth.state_mismatch" || /^auth\./.test(err.code) ? relogin : null);
      } else {
        showStop(new Stop("网络异常，请稍后重试。"), null);
        throw err;
      }
    }
  }

  main();
})();
