// A compact public-suffix check, used to refuse allow rules so wide they open a whole registry
// (`*.com`, `*.co.uk`, `*.github.io`). It is not the full Public Suffix List: it covers
//  - every single-label name (each ICANN TLD, generic or country-code, is one label), and
//  - the multi-label suffixes under which unrelated parties commonly register names: second-level
//    country registries (co.uk, com.au, co.jp, ...) and shared hosting platforms (github.io,
//    herokuapp.com, cloudfront.net, ...).
// A name under a suffix missing here is accepted; the cost of a miss is a rule wider than intended,
// which the user wrote explicitly.

const MULTI_LABEL_SUFFIXES = new Set([
  // Country registries' second levels.
  'ac.uk', 'co.uk', 'gov.uk', 'ltd.uk', 'me.uk', 'net.uk', 'org.uk', 'plc.uk', 'sch.uk',
  'com.au', 'net.au', 'org.au', 'edu.au', 'gov.au', 'asn.au', 'id.au',
  'co.nz', 'net.nz', 'org.nz', 'ac.nz', 'govt.nz',
  'co.jp', 'ne.jp', 'or.jp', 'ac.jp', 'go.jp', 'gr.jp', 'ed.jp',
  'co.kr', 'ne.kr', 'or.kr', 'ac.kr', 'go.kr',
  'com.cn', 'net.cn', 'org.cn', 'edu.cn', 'gov.cn', 'ac.cn',
  'com.hk', 'net.hk', 'org.hk', 'edu.hk', 'gov.hk',
  'com.tw', 'net.tw', 'org.tw', 'edu.tw', 'gov.tw',
  'com.sg', 'net.sg', 'org.sg', 'edu.sg', 'gov.sg',
  'co.in', 'net.in', 'org.in', 'firm.in', 'gen.in', 'ind.in', 'ac.in', 'edu.in', 'gov.in',
  'com.br', 'net.br', 'org.br', 'gov.br', 'edu.br',
  'com.ar', 'com.mx', 'com.co', 'com.pe', 'com.ve', 'com.uy', 'com.ec',
  'co.za', 'org.za', 'net.za', 'gov.za', 'ac.za',
  'com.tr', 'net.tr', 'org.tr', 'gov.tr', 'edu.tr',
  'com.ru', 'net.ru', 'org.ru', 'com.ua', 'com.pl', 'net.pl', 'org.pl',
  'co.il', 'org.il', 'ac.il', 'gov.il',
  'com.my', 'com.ph', 'com.vn', 'co.th', 'in.th', 'co.id', 'or.id', 'ac.id',
  'com.pk', 'com.eg', 'com.sa', 'com.ng', 'co.ke',
  // Shared hosting and cloud platforms: each subdomain belongs to a different customer.
  'github.io', 'gitlab.io', 'bitbucket.io', 'pages.dev', 'workers.dev',
  'herokuapp.com', 'netlify.app', 'vercel.app', 'web.app', 'firebaseapp.com', 'appspot.com',
  'azurewebsites.net', 'cloudapp.net', 'blob.core.windows.net', 'cloudfront.net',
  'amazonaws.com', 's3.amazonaws.com', 'elasticbeanstalk.com', 'fly.dev', 'onrender.com',
  'glitch.me', 'repl.co', 'ngrok.io', 'ngrok-free.app', 'blogspot.com', 'wordpress.com',
  'duckdns.org', 'no-ip.org', 'dyndns.org',
]);

/** True when `name` (lower case, no trailing dot) is a public suffix by the coverage above. */
export function isPublicSuffix(name: string): boolean {
  return !name.includes('.') || MULTI_LABEL_SUFFIXES.has(name);
}
