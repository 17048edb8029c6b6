// On-air overlay: one results document per event, rendered as bars.
// State is mirrored in data attributes so tests and operators can read it.
(function () {
  "use strict";
  var id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  var body = document.body;
  var bars = document.getElementById("bars");
  var lastSeq = -1;

  function text(el, value) { el.textContent = value; }

  function row(candidate) {
    var r = document.createElement("div");
    r.className = "row";
    r.dataset.candidateId = candidate.candidateId;
    r.innerHTML =
      '<div class="label"><span class="name"></span><span class="party"></span></div>' +
      '<div class="track"><div class="bar"></div></div>' +
      '<div class="figures"><span class="pct"></span><span class="votes"></span></div>';
    bars.appendChild(r);
    return r;
  }

  function render(doc) {
    if (typeof doc.seq === "number") {
      if (doc.seq <= lastSeq) return;
      lastSeq = doc.seq;
      body.dataset.seq = String(doc.seq);
    }
    text(document.getElementById("title"), doc.electionTitle);
    var state = doc.embargoed ? "embargoed" : doc["final"] ? "final" : doc.status.toLowerCase();
    body.dataset.state = state;
    body.dataset.status = doc.status;
    body.dataset.final = String(doc["final"]);
    body.dataset.embargoed = String(doc.embargoed);
    var badge = document.getElementById("badge");
    text(badge, doc.embargoed ? "EMBARGOED" : doc["final"] ? "FINAL" : doc.status === "ACTIVE" ? "LIVE" : doc.status);
    // Each state has a colour of its own: a cancelled vote must never look live on air.
    badge.className = "badge " + state;
    badge.dataset.state = state;
    document.getElementById("embargo").hidden = !doc.embargoed;
    bars.hidden = doc.embargoed;
    if (doc.embargoed) {
      while (bars.firstChild) bars.removeChild(bars.firstChild);
      body.dataset.totalVotes = "";
      text(document.getElementById("total"), "");
      return;
    }
    var seen = {};
    // The leader is decided by votes, never by the rounded percentage: 1,320 and 1,321 votes
    // can both show 25.3 %, and only one of them leads. Equal counts are a tie, shown as one.
    var most = Math.max.apply(null, doc.totals.map(function (t) { return t.votes; }).concat([0]));
    var leaders = most > 0 ? doc.totals.filter(function (t) { return t.votes === most; }).length : 0;
    body.dataset.leaders = String(leaders);
    doc.totals.forEach(function (t) {
      seen[t.candidateId] = true;
      var r = bars.querySelector('[data-candidate-id="' + t.candidateId + '"]') || row(t);
      var leads = most > 0 && t.votes === most;
      r.dataset.votes = String(t.votes);
      r.dataset.percentage = t.percentage.toFixed(1);
      r.dataset.leading = String(leads);
      r.classList.toggle("leading", leads);
      r.classList.toggle("tied", leads && leaders > 1);
      text(r.querySelector(".name"), t.name);
      text(r.querySelector(".party"), t.party || "");
      text(r.querySelector(".pct"), t.percentage.toFixed(1) + "%");
      text(r.querySelector(".votes"), t.votes.toLocaleString("en-US"));
      r.querySelector(".bar").style.width = t.percentage + "%";
    });
    Array.prototype.slice.call(bars.children).forEach(function (r) {
      if (!seen[r.dataset.candidateId]) bars.removeChild(r);
    });
    body.dataset.totalVotes = String(doc.totalVotes);
    // The policy says what the total counts: votes (several per viewer under
    // multi) or each viewer's current vote (changeable).
    body.dataset.policy = doc.policy || "single";
    var note = doc.policy === "multi" ? " · up to " + doc.maxVotes + " votes per viewer"
      : doc.policy === "changeable" ? " · viewers may change their vote until the lines close" : "";
    text(document.getElementById("total"), doc.totalVotes.toLocaleString("en-US") + " votes" + note);
  }

  function onEvent(e) {
    try { render(JSON.parse(e.data)); } catch (err) { body.dataset.error = String(err); }
  }

  fetch("/api/v1/results/" + encodeURIComponent(id), { headers: { accept: "application/json" } })
    .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
    .then(function (doc) { if (lastSeq < 0) render(doc); })
    .catch(function (status) { body.dataset.error = "results answered " + status; });

  var source = new EventSource("/api/v1/results/" + encodeURIComponent(id) + "/stream");
  ["SNAPSHOT", "VOTE_UPDATE", "STATUS_CHANGE"].forEach(function (kind) {
    source.addEventListener(kind, onEvent);
  });
  source.addEventListener("HEARTBEAT", function () { body.dataset.heartbeat = new Date().toISOString(); });
  source.onopen = function () { body.dataset.connected = "true"; };
  source.onerror = function () { body.dataset.connected = "false"; };
})();
