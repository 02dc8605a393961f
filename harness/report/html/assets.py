"""The HTML report's inline style sheet and script (no external resources; the script only filters the grid)."""

from __future__ import annotations

CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:.8em 1.2em;color:#222}
h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.15em;margin:1.1em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:.8em 0 .3em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}
code{background:#f2f2f2;padding:0 3px;font-size:12px}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;white-space:pre-wrap;max-height:20em;font-size:12px}
nav a{margin-right:1em}
.hint{color:#666;font-size:12px}
.headline{padding:.45em .7em;border-radius:4px;margin:.5em 0}
.headline.good{background:#dff3df;border:1px solid #8c8}.headline.bad{background:#fbe0e0;border:1px solid #d88}
table.counts td.num{text-align:right;min-width:3.2em}table.counts tr.total th,table.counts tr.total td{font-weight:700}
table.counts td.alert{background:#f4a6a6}
.none{color:#2a6a2a}
div.cause{border-left:5px solid #ccc;padding:.2em .7em;margin:.5em 0;background:#fafafa}
.cause p{margin:.15em 0}.cause .msg{font-family:ui-monospace,monospace;font-size:12px;word-break:break-word}
.cause .why{color:#444}.cause.regression{border-color:#d33}.cause.unexpected_pass{border-color:#db0}
.cause.flaky{border-color:#93c}.cause.documented{border-color:#999}.cause.undocumented{border-color:#e59a3c}
.cmd{display:flex;gap:.4em;align-items:baseline;margin:.2em 0}
.cmd code{display:block;overflow-wrap:anywhere;max-height:4.4em;overflow-y:auto;padding:2px 4px;user-select:all}
details.ids ul{margin:.2em 0;padding-left:1.4em;columns:2;font-size:12px}
details.ids summary{cursor:pointer;color:#245}
.chip{display:inline-block;padding:0 6px;border:1px solid #bbb;border-radius:3px;font-size:12px}
.ok{background:#c8ecc8}.degraded{background:#e3f5c0}.not_claimed{background:#d3e5f8}.observed_pass{background:#e4efe4}
.documented{background:#dcdcdc}.undocumented{background:#f8d2a8}.regression{background:#f4a6a6}
.unexpected_pass{background:#ffe28a}.flaky{background:#d7b8f0}
.filters{display:flex;flex-wrap:wrap;gap:.3em .9em;align-items:center;margin:.3em 0;position:sticky;top:0;
background:#fff;z-index:5;padding:.2em 0}
.filters select{font-size:12px;max-width:16em}
.legend{display:flex;flex-wrap:wrap;gap:.25em .4em;margin:.3em 0}
.legend button{cursor:pointer;text-align:left;font:inherit;font-size:12px}.legend .zero{opacity:.55}
.gridwrap{overflow:auto;max-height:calc(100vh - 7em);border:1px solid #ccc;width:max-content;max-width:100%}
#grid{margin:0;font-size:12px;border-collapse:separate;border-spacing:0}
#grid thead{position:sticky;top:0;z-index:3}
#grid th,#grid td{padding:1px 3px;white-space:nowrap;border:0;border-right:1px solid #ccc;border-bottom:1px solid #ccc}
#grid thead th{text-align:center;font-weight:600;border-color:#bbb;background:#eef0f3;border-bottom:1px solid #bbb}
#grid thead th.grp{white-space:normal;min-width:2em}#grid thead th.rh{vertical-align:bottom;text-align:left}
#grid tbody th{font-weight:400;background:#f8f8f8;max-width:13em;overflow:hidden;text-overflow:ellipsis;
font-size:11px}
#grid tbody th.rep{color:#aaa}
#grid td.c{text-align:center;min-width:1.4em;padding:1px 1px}#grid thead th.leaf{min-width:1.4em;padding:1px}#grid td.x{background:#fff}
#grid td.c a{color:inherit;text-decoration:none;display:block}
#grid td.c.off{background:#fff;color:#ddd}
#grid tbody tr:hover th,#grid tbody tr:hover td.x{background:#fff6cc}
details.cell{margin:.3em 0;padding:.2em .6em;border-left:4px solid #ccc}
details.cell.regression{border-color:#d33}details.cell.flaky{border-color:#93c}
details.cell.unexpected_pass{border-color:#db0}details.cell:target{outline:2px solid #36c}
details.cell summary{cursor:pointer}
"""

# Filters: each select's value must equal the cell's value on that axis, read from the cell, its row, or its
# column header (in that order). Rows without a matching cell and columns without one are hidden, so no empty
# column is left; group headers shrink to their visible columns. The address's hash holds the filters
# (#status=compile_error&backend=...) and is applied on load.
JS = """
(function(){
var grid=document.getElementById('grid');if(!grid)return;
var sels=[].slice.call(document.querySelectorAll('#filters select'));
var leaves=[].slice.call(grid.querySelectorAll('thead th.leaf'));
var groups=[].slice.call(grid.querySelectorAll('thead th.grp'));
var rows=[].slice.call(grid.tBodies[0].rows);
var byCol=leaves.map(function(){return [];});
rows.forEach(function(tr){[].forEach.call(tr.querySelectorAll('td'),function(td){byCol[+td.dataset.col].push(td);});});
function val(td,tr,axis){
 var v=td.dataset[axis];if(v===undefined)v=tr.dataset[axis];
 if(v===undefined)v=leaves[+td.dataset.col].dataset[axis];return v;}
function apply(write){
 var f={};sels.forEach(function(s){if(s.value)f[s.dataset.axis]=s.value;});
 var keys=Object.keys(f),hits=leaves.map(function(){return 0;}),shown=0;
 rows.forEach(function(tr){var any=false;
  [].forEach.call(tr.querySelectorAll('td.c'),function(td){
   var ok=keys.every(function(k){return val(td,tr,k)===f[k];});
   td.classList.toggle('off',!ok);if(ok){any=true;hits[+td.dataset.col]++;shown++;}});
  tr.hidden=!any;});
 leaves.forEach(function(th,i){var hide=!hits[i];th.hidden=hide;byCol[i].forEach(function(td){td.hidden=hide;});});
 groups.forEach(function(th){
  var n=th.dataset.cols.split(' ').filter(function(i){return hits[+i];}).length;th.hidden=!n;if(n)th.colSpan=n;});
 document.getElementById('shown').textContent=shown;
 if(write){var h=keys.map(function(k){return encodeURIComponent(k)+'='+encodeURIComponent(f[k]);}).join('&');
  history.replaceState(null,'',h?'#'+h:location.pathname+location.search);}}
function fromHash(){
 var h=location.hash.slice(1);if(h.indexOf('=')<0)return false;
 var f={};h.split('&').forEach(function(p){var i=p.indexOf('=');
  if(i>0)f[decodeURIComponent(p.slice(0,i))]=decodeURIComponent(p.slice(i+1));});
 sels.forEach(function(s){var v=f[s.dataset.axis]||'';
  s.value=[].some.call(s.options,function(o){return o.value===v;})?v:'';});return true;}
sels.forEach(function(s){s.addEventListener('change',function(){apply(true);});});
[].forEach.call(document.querySelectorAll('#legend button'),function(b){b.addEventListener('click',function(){
 sels.forEach(function(s){if(s.dataset.axis==='category')s.value=b.dataset.category;});apply(true);});});
document.getElementById('reset').addEventListener('click',function(){sels.forEach(function(s){s.value='';});apply(true);});
window.addEventListener('hashchange',function(){if(fromHash())apply(false);});
fromHash();apply(false);
})();
"""
