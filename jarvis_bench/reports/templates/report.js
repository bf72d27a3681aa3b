(function(){
  var rows=[].slice.call(document.querySelectorAll('tr.prompt'));
  if(!rows.length)return;
  var f={cat:document.getElementById('f-cat'),st:document.getElementById('f-status'),ad:document.getElementById('f-adapter'),
         tw:document.getElementById('f-tool'),q:document.getElementById('f-search'),so:document.getElementById('f-sort')};
  var count=document.getElementById('shown');
  function apply(){
    var a=f.ad.value,q=f.q.value.toLowerCase(),n=0;
    rows.forEach(function(r){
      var ok=(!f.cat.value||r.dataset.category===f.cat.value)&&(!f.st.value||r.getAttribute('data-status-'+a)===f.st.value)
        &&(!f.tw.checked||r.getAttribute('data-toolwrong-'+a)==='1')&&(!q||r.textContent.toLowerCase().indexOf(q)>=0);
      r.hidden=!ok;if(ok)n++;
    });
    document.querySelectorAll('[data-col]').forEach(function(c){c.hidden=c.getAttribute('data-col')!==a&&c.getAttribute('data-col')!=='base';});
    count.textContent=n;
  }
  function sort(){
    var a=f.ad.value,body=rows[0].parentNode;
    var s=rows.slice().sort(function(x,y){
      return f.so.checked?(parseFloat(x.getAttribute('data-delta-'+a)||0)-parseFloat(y.getAttribute('data-delta-'+a)||0))
        :(+x.dataset.order)-(+y.dataset.order);});
    s.forEach(function(r){body.appendChild(r);});
  }
  // the filters can come from the address: benchmark_report.html?status=regressed&q=chrome (shareable)
  var p=new URLSearchParams(location.search);
  if(p.get('cat'))f.cat.value=p.get('cat');if(p.get('status'))f.st.value=p.get('status');
  if(p.get('adapter'))f.ad.value=p.get('adapter');if(p.get('q'))f.q.value=p.get('q');
  f.tw.checked=p.get('tool')==='wrong';f.so.checked=p.get('sort')==='delta';
  sort();
  [f.cat,f.st,f.ad,f.tw].forEach(function(e){e.addEventListener('change',function(){sort();apply();});});
  f.q.addEventListener('input',apply);f.so.addEventListener('change',function(){sort();apply();});
  apply();
})();
(function(){
  // the noisy variants: filter by noise rule, by failures the clean prompt did not have, by text
  var rows=[].slice.call(document.querySelectorAll('tr.noisy'));
  if(!rows.length)return;
  var rule=document.getElementById('n-rule'),ad=document.getElementById('n-adapter'),
      fail=document.getElementById('n-fail'),q=document.getElementById('n-search'),count=document.getElementById('n-shown');
  var sources=[].slice.call(document.querySelectorAll('tr.source'));
  function apply(){
    var a=ad.value,s=q.value.toLowerCase(),n=0,shown={};
    rows.forEach(function(r){
      var ok=(!rule.value||r.dataset.rules.indexOf(' '+rule.value+' ')>=0)
        &&(!fail.checked||r.getAttribute('data-ok-'+a)==='broken')&&(!s||r.textContent.toLowerCase().indexOf(s)>=0);
      r.hidden=!ok;if(ok){n++;shown[r.dataset.source]=1;}
    });
    sources.forEach(function(r){r.hidden=!shown[r.dataset.source];});
    document.querySelectorAll('[data-ncol]').forEach(function(c){var k=c.getAttribute('data-ncol');c.hidden=k!==a&&k!=='base';});
    count.textContent=n;
  }
  // from the address too: benchmark_report.html?rule=brand&noisy=broken#robustness
  var p=new URLSearchParams(location.search);
  if(p.get('rule'))rule.value=p.get('rule');if(p.get('nadapter'))ad.value=p.get('nadapter');
  if(p.get('nq'))q.value=p.get('nq');fail.checked=p.get('noisy')==='broken';
  [rule,ad,fail].forEach(function(e){e.addEventListener('change',apply);});
  q.addEventListener('input',apply);
  apply();
})();
