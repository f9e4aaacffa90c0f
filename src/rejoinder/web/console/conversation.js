// A conversation's page keeps its transcript live: it asks the console for the messages after the last one it
// shows, every few seconds while the page is visible, and draws them as the server drew the others. Without
// this script the page still shows the transcript as it was when loaded.
(function () {
  "use strict";
  var list = document.getElementById("transcript");
  if (!list || !list.dataset.live) {
    return;
  }
  var url = list.dataset.live;
  var after = parseInt(list.dataset.after || "0", 10) || 0;
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

  function stop(text) {
    stopped = true;
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
        body.messages.forEach(function (message) {
          if (message.seq > after) {
            draw(message);
            after = message.seq;
          }
        });
        var empty = document.getElementById("transcript-empty");
        if (empty && body.messages.length) {
          empty.remove();
        }
        wait = body.messages.length ? 500 : every;
      })
      .catch(function () {
        wait = Math.min(wait * 2, longest);
      })
      .then(schedule);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !stopped) {
      wait = 0;
      schedule();
      wait = every;
    }
  });
  schedule();
})();
