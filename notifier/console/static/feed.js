// The live feed: new attempts from /ui/feed/events (Server-Sent Events),
// newest first. Every value goes into the page as text, never as HTML.
(function () {
  "use strict";
  var table = document.getElementById("feed");
  var status = document.getElementById("feed-state");
  if (!table || !window.EventSource) return;
  var body = table.tBodies[0];
  var max = parseInt(table.dataset.max, 10) || 200;

  function setState(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function cell(tr, text, className) {
    var td = tr.insertCell(-1);
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function add(a) {
    var tr = document.createElement("tr");
    tr.className = "new";
    tr.dataset.seq = a.seq;
    tr.dataset.id = a.id;
    tr.dataset.slot = a.n;
    tr.dataset.outcome = a.outcome;
    tr.dataset.received = Date.now();
    cell(tr, a.start);
    var link = document.createElement("a");
    link.href = a.href; // built by the server: /ui/notices/<escaped id>
    link.textContent = a.id;
    cell(tr, undefined, "wrap").appendChild(link);
    cell(tr, a.partner || "–", "wrap");
    cell(tr, a.n);
    var badge = document.createElement("span");
    badge.className = "state state-" + a.outcome;
    badge.textContent = a.outcome;
    cell(tr).appendChild(badge);
    cell(tr, a.status ? a.status : "–");
    cell(tr, a.late);
    cell(tr, a.took);
    var url = document.createElement("span");
    url.title = a.url;
    url.textContent = a.url;
    cell(tr, undefined, "url").appendChild(url);
    var reply = cell(tr, undefined, "reply");
    if (a.error) {
      var err = document.createElement("span");
      err.className = "error";
      err.textContent = a.error;
      reply.appendChild(err);
      reply.appendChild(document.createTextNode(" "));
    }
    if (a.response) reply.appendChild(document.createTextNode(a.response));
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > max) body.deleteRow(-1);
  }

  var source = new EventSource(table.dataset.events);
  source.onopen = function () { setState("live", "live"); };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      setState("closed", "disconnected: reload the page (or log in again)");
    } else {
      setState("connecting", "reconnecting…");
    }
  };
  source.addEventListener("attempt", function (ev) { add(JSON.parse(ev.data)); });
})();
