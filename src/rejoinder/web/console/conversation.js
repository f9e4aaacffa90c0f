// A conversation's page keeps its transcript live: it listens to the console's event stream of the conversation
// (server-sent events: each message as it is sent, status changes, the end when the conversation is erased or the
// user signed out) and draws the new messages as the server drew the others. Where EventSource is missing or
// keeps failing, it asks for the messages after the last one it shows every few seconds instead, while the page
// is visible. Without this script the page still shows the transcript as it was when loaded.
(function () {
  "use strict";
  var list = document.getElementById("transcript");
  if (!list || !list.dataset.live) {
    return;
  }
  var url = list.dataset.live;
  var streamUrl = list.dataset.stream;
  var after = parseInt(list.dataset.after || "0", 10) || 0;
  var failures = 0; // stream errors since it last opened
  var mostFailures = 3;
  var source = null;
  var every = 2000;
  var longest = 30000;
  var wait = every;
  var timer = null;
  var stopped = false;

  var note = document.getElementById("live-note");
  if (note) {
    note.hidden = false;
  }

  function when(at) {
    var time = document.createElement("time");
    time.dateTime = at.iso;
    time.textContent = at.text;
    time.title = at.full;
    return time;
  }

  function draw(message) {
    var item = document.createElement("li");
    item.className = "message message-" + message.sender;
    item.dataset.seq = String(message.seq);
    var who = document.createElement("span");
    who.className = "visually-hidden";
    who.textContent = (message.sender === "customer" ? "Customer" : message.sender === "bot" ? "Bot" : "System") + ":";
    var bubble = document.createElement("p");
    bubble.className = "bubble";
    bubble.textContent = message.text;
    item.appendChild(who);
    item.appendChild(bubble);
    if (message.choices && message.choices.length) {
      var choices = document.createElement("ul");
      choices.className = "choices";
      choices.setAttribute("aria-label", "Choices offered");
      message.choices.forEach(function (text) {
        var chip = document.createElement("li");
        chip.className = "chip";
        chip.textContent = text;
        choices.appendChild(chip);
      });
      item.appendChild(choices);
    }
    item.appendChild(when(message.at));
    list.appendChild(item);
  }

  function add(message) {
    if (message.seq > after) {
      draw(message);
      after = message.seq;
      var empty = document.getElementById("transcript-empty");
      if (empty) {
        empty.remove();
      }
    }
  }

  function showStatus(status) {
    var badge = document.querySelector(".conversation-title .badge");
    if (badge && (status === "active" || status === "closed")) {
      badge.className = "badge badge-" + status;
      badge.textContent = status;
    }
  }

  function stop(text) {
    stopped = true;
    if (source) {
      source.close();
    }
    if (note) {
      note.textContent = text;
      note.setAttribute("role", "status");
    }
  }

  function schedule() {
    if (!stopped && !document.hidden) {
      timer = window.setTimeout(poll, wait);
    }
  }

  function poll() {
    timer = null;
    fetch(url + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) {
        if (answer.status === 404) {
          stop("This conversation was erased: nothing more will appear.");
          return null;
        }
        var type = answer.headers.get("content-type") || "";
        if (!answer.ok || type.indexOf("application/json") !== 0) {
          throw new Error("status " + answer.status);
        }
        return answer.json();
      })
      .then(function (body) {
        if (!body) {
          return;
        }
        body.messages.forEach(add);
        showStatus(body.status);
        wait = body.messages.length ? 500 : every;
      })
      .catch(function () {
        wait = Math.min(wait * 2, longest);
      })
      .then(schedule);
  }

  function startPolling() {
    source = null;
    list.dataset.via = "polling";
    schedule();
  }

  // The stream reconnects by itself when it ends (it lasts a few minutes) or the network fails; once the server
  // refuses it (too many open, erased, signed out) or it failed a few times in a row, the page polls instead.
  function listen() {
    source = new EventSource(streamUrl + "?after=" + after);
    source.onopen = function () {
      failures = 0;
      list.dataset.via = "events";
    };
    source.onmessage = function (event) {
      add(JSON.parse(event.data));
    };
    source.addEventListener("status", function (event) {
      showStatus(JSON.parse(event.data).status);
    });
    source.addEventListener("end", function (event) {
      var reason = JSON.parse(event.data).reason;
      stop(
        reason === "erased"
          ? "This conversation was erased: nothing more will appear."
          : "You are signed out: sign in again to see new messages."
      );
    });
    source.onerror = function () {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= mostFailures) {
        source.close();
        startPolling();
      }
    };
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !stopped && source === null) {
      wait = 0;
      schedule();
      wait = every;
    }
  });
  if (window.EventSource && streamUrl) {
    listen();
  } else {
    startPolling();
  }
})();
