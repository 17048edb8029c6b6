// Auditors' dashboard: polls the reconciliation of every election each second.
(function () {
  "use strict";
  var body = document.body;
  var tbody = document.querySelector("#elections tbody");
  var fromHash = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (fromHash) {
    sessionStorage.setItem("livevote.auditToken", decodeURIComponent(fromHash[1]));
    history.replaceState(null, "", location.pathname);
  }
  var form = document.getElementById("login");
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem("livevote.auditToken", document.getElementById("token").value.trim());
    form.hidden = true;
    poll();
  });

  function cell(tr, field, value) {
    var td = document.createElement("td");
    td.dataset.field = field;
    td.textContent = value;
    tr.appendChild(td);
  }

  function show(page) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    page.content.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.electionId = r.electionId;
      tr.dataset.verdict = r.verdict;
      tr.className = "verdict-" + r.verdict + (r.alarm ? " alarm" : "");
      cell(tr, "title", r.electionTitle);
      cell(tr, "status", r.status);
      cell(tr, "accepted", r.accepted);
      cell(tr, "persisted", r.persisted);
      cell(tr, "conflicts", r.conflicts);
      cell(tr, "deadLettered", r.deadLettered);
      cell(tr, "inFlight", r.inFlight);
      cell(tr, "oldestQueued", r.oldestQueuedAgeSeconds == null ? "-" : r.oldestQueuedAgeSeconds.toFixed(1) + " s");
      cell(tr, "difference", r.liveVsPersistedDifference);
      cell(tr, "verdict", r.verdictText);
      cell(tr, "allowsFinal", r.allowsFinal ? "yes" : "no");
      if (r.deadLettered > 0) tr.className += " dead-letters";
      tbody.appendChild(tr);
    });
    var dead = page.deadLetterMessages || 0;
    body.dataset.alarm = String(page.alarm);
    body.dataset.elections = String(page.content.length);
    body.dataset.deadLetters = String(dead);
    body.dataset.unattributed = String(page.unattributedDeadLetters || 0);
    var dlq = document.getElementById("dlq");
    dlq.hidden = dead === 0;
    dlq.textContent = dead === 0 ? "" :
      "Dead-letter queue: " + dead + (dead === 1 ? " message" : " messages") +
      ", " + page.unattributedDeadLetters + " unattributed (no election can be read from them)" +
      (page.deadLetteredElsewhere > 0 ? ", " + page.deadLetteredElsewhere + " votes of elections not listed here" : "") +
      ". No result is final while unattributed messages wait; see livevote dlq list.";
    var alarm = document.getElementById("alarm");
    var state = page.alarm ? "on" : dead > 0 ? "warn" : "off";
    alarm.textContent = page.alarm ? "ALARM: accepted votes missing" :
      dead > 0 ? "ATTENTION: " + dead + " in the dead-letter queue" : "OK: no loss";
    alarm.className = "alarm " + state;
    body.dataset.alarmState = state;
    document.getElementById("updated").textContent = new Date().toISOString();
    body.dataset.loaded = "true";
  }

  function fail(message) {
    var el = document.getElementById("error");
    el.textContent = message;
    el.hidden = false;
    body.dataset.alarm = "unknown";
  }

  function poll() {
    var token = sessionStorage.getItem("livevote.auditToken");
    if (!token) { form.hidden = false; return; }
    fetch("/api/v1/audit/reconciliation?size=100", { headers: { authorization: "Bearer " + token } })
      .then(function (r) {
        return r.json().then(function (j) { return r.ok ? j : Promise.reject(j.code + ": " + j.message); });
      })
      .then(function (page) { document.getElementById("error").hidden = true; show(page); })
      .catch(function (e) {
        fail(String(e));
        if (String(e).indexOf("INVALID_TOKEN") === 0 || String(e).indexOf("TOKEN_EXPIRED") === 0) form.hidden = false;
      });
  }

  poll();
  setInterval(poll, 1000);
})();
