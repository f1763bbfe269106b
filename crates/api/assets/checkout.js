// tronpay checkout: copy buttons, the countdown and the live status (Server-Sent
// Events from /v1/payments/{id}/stream). Without JavaScript the page refreshes
// itself (a <noscript> refresh) and shows the same status.
(function () {
  "use strict";
  var main = document.getElementById("checkout");
  if (!main) { return; }
  var status = document.getElementById("status");
  var back = document.getElementById("back");
  var countdown = document.getElementById("countdown");
  var expires = Date.parse(main.dataset.expires);
  var ended = false;

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = button.dataset.copy;
      var done = function () {
        var label = button.textContent;
        button.textContent = main.dataset.copied;
        setTimeout(function () { button.textContent = label; }, 1500);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () {});
      }
    });
  });

  function tick() {
    if (!countdown || ended) { return; }
    var left = Math.max(0, Math.floor((expires - Date.now()) / 1000));
    var hours = Math.floor(left / 3600), minutes = Math.floor(left / 60) % 60, seconds = left % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    countdown.textContent = (hours > 0 ? hours + ":" + two(minutes) : minutes) + ":" + two(seconds);
  }
  tick();
  setInterval(tick, 1000);

  function show(update) {
    status.textContent = update.text;
    status.dataset.state = update.state;
    status.parentElement.className = "status status-" + update.state;
    if (update.final) {
      // Nothing to pay any more: no address, amount or QR code to act on.
      ended = true;
      if (source) { source.close(); }
      var payable = document.getElementById("payable");
      if (payable) { payable.hidden = true; }
    }
    if (update.state === "paid") {
      if (back) { back.hidden = false; }
      if (main.dataset.redirect) {
        status.textContent = update.text + " " + main.dataset.redirecting;
        setTimeout(function () { window.location.assign(main.dataset.redirect); }, 3000);
      }
    }
  }

  var source = null;
  if (window.EventSource) {
    source = new EventSource(main.dataset.stream);
    source.addEventListener("status", function (event) {
      try { show(JSON.parse(event.data)); } catch (error) { /* a garbled event: wait for the next */ }
    });
  }
})();
