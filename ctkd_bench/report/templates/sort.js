// Sortable tables: click (or Enter on) a header to sort the first body of its table.
// Empty cells (data-sort="") always go last; numbers compare as numbers.
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim().toLowerCase() : v;
  }
  function isNumber(s) { return s.trim() !== "" && isFinite(Number(s)); }
  function compare(x, y) {
    if (isNumber(x) && isNumber(y)) { return Number(x) - Number(y); }
    return x.localeCompare(y);
  }
  function sortBy(table, index, th) {
    var first = th.getAttribute("data-first") || "ascending";
    var current = th.getAttribute("aria-sort");
    var dir = current ? (current === "ascending" ? "descending" : "ascending") : first;
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var c = compare(x, y);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.title = "Sort by this column";
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, index, th); }
      });
    });
  });
})();
