// A Workload API client nobody here wrote: npm's @grpc/grpc-js with @grpc/proto-loader reading
// proto/workload.proto, against workload_harness (run by test_workload_api_node.sh).
//   node workload_api_node.js full SOCKET SPIFFE_ID TMPDIR   the basic flow, then rotations
//   node workload_api_node.js denied SOCKET                   expects PERMISSION_DENIED
// Prints "ok - ..." or "FAIL - ..." per check; exits 1 on any failure.
'use strict';
const path = require('path');
const fs = require('fs');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SRC = process.env.SIGIL_SOURCE_DIR || path.join(__dirname, '..', '..');
let failed = 0;

function check(name, cond, detail) {
  if (cond) {
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`FAIL - ${name}: ${detail === undefined ? '' : JSON.stringify(detail)}`);
  }
}

function client(sock) {
  const def = protoLoader.loadSync(path.join(SRC, 'proto', 'workload.proto'), {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
    includeDirs: [path.join(SRC, 'proto'), '/usr/include'],
  });
  const Api = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
  return new Api('unix://' + sock, grpc.credentials.createInsecure());
}

function header() {
  const md = new grpc.Metadata();
  md.add('workload.spiffe.io', 'true');
  return md;
}

function deadline(s) {
  return { deadline: Date.now() + s * 1000 };
}

// The first `count` messages of a server stream, or the error that ended it.
function streamTake(call, count) {
  return new Promise((resolve) => {
    const got = [];
    call.on('data', (m) => {
      got.push(m);
      if (got.length === count) {
        call.cancel();
        resolve({ got });
      }
    });
    call.on('error', (e) => resolve({ got, err: e }));
    call.on('end', () => resolve({ got }));
  });
}

function unary(cli, method, req, md) {
  return new Promise((resolve) => {
    cli[method](req, md, deadline(10), (err, resp) => resolve({ err, resp }));
  });
}

function derSplit(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    let n = buf[i + 1];
    let hdr = 2;
    if (n & 0x80) {
      const k = n & 0x7f;
      n = 0;
      for (let j = 0; j < k; j++) n = n * 256 + buf[i + 2 + j];
      hdr = 2 + k;
    }
    out.push(buf.subarray(i, i + hdr + n));
    i += hdr + n;
  }
  return out;
}

function pem(kind, der) {
  const b = der.toString('base64').match(/.{1,64}/g).join('\n');
  return `-----BEGIN ${kind}-----\n${b}\n-----END ${kind}-----\n`;
}

function b64u(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

async function full(sock, spiffeId, tmp) {
  const cli = client(sock);
  const first = await streamTake(cli.FetchX509SVID({}, header(), deadline(10)), 1);
  check('FetchX509SVID answers', !first.err && first.got.length === 1, first.err && first.err.message);
  if (first.err) return;
  const svid = first.got[0].svids[0];
  check('svids[0] is the entry\'s SPIFFE ID (W-6)', svid.spiffe_id === spiffeId, svid.spiffe_id);
  const chain = derSplit(svid.x509_svid);
  const bundle = derSplit(svid.bundle);
  fs.writeFileSync(path.join(tmp, 'n_leaf.pem'), pem('CERTIFICATE', chain[0]));
  fs.writeFileSync(path.join(tmp, 'n_chain.pem'), chain.slice(1).map((c) => pem('CERTIFICATE', c)).join(''));
  fs.writeFileSync(path.join(tmp, 'n_bundle.pem'), bundle.map((c) => pem('CERTIFICATE', c)).join(''));
  let verified = '';
  try {
    verified = execFileSync('openssl', ['verify', '-CAfile', path.join(tmp, 'n_bundle.pem'), '-untrusted',
      path.join(tmp, 'n_chain.pem'), path.join(tmp, 'n_leaf.pem')]).toString();
  } catch (e) {
    verified = String(e.stdout) + String(e.stderr);
  }
  check('openssl verify accepts the chain against the bundle', /: OK/.test(verified), verified);
  const key = crypto.createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  const leaf = new crypto.X509Certificate(chain[0]);
  check('the PKCS#8 key matches the leaf', leaf.checkPrivateKey(key));
  check('the leaf carries the SPIFFE ID', (leaf.subjectAltName || '').includes('URI:' + spiffeId),
    leaf.subjectAltName);

  const jwt = await unary(cli, 'FetchJWTSVID', { audience: ['node-aud'] }, header());
  check('FetchJWTSVID answers (W-8)', !jwt.err && jwt.resp.svids.length === 1, jwt.err && jwt.err.message);
  if (jwt.err) return;
  const token = jwt.resp.svids[0].svid;
  const jb = await streamTake(cli.FetchJWTBundles({}, header(), deadline(10)), 1);
  const td = 'spiffe://' + spiffeId.split('/')[2];
  const jwks = JSON.parse(jb.got[0].bundles[td].toString());
  const [h, p, s] = token.split('.');
  const kid = JSON.parse(b64u(h).toString()).kid;
  const jwk = jwks.keys.find((k) => k.kid === kid);
  const pub = crypto.createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, format: 'jwk' });
  check('the JWT-SVID verifies with the JWKS from FetchJWTBundles (W-9)',
    crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key: pub, dsaEncoding: 'ieee-p1363' }, b64u(s)));
  const v = await unary(cli, 'ValidateJWTSVID', { audience: 'node-aud', svid: token }, header());
  check('ValidateJWTSVID accepts it (W-10)', !v.err && v.resp.spiffe_id === spiffeId &&
    v.resp.claims.fields.sub.stringValue === spiffeId, v.err ? v.err.message : v.resp);
  const bad = await unary(cli, 'ValidateJWTSVID', { audience: 'other', svid: token }, header());
  check('ValidateJWTSVID: wrong audience -> INVALID_ARGUMENT', bad.err &&
    bad.err.code === grpc.status.INVALID_ARGUMENT, bad.err && bad.err.code);
  const nohdr = await unary(cli, 'FetchJWTSVID', { audience: ['a'] }, new grpc.Metadata());
  check('no security header -> INVALID_ARGUMENT (E-2)', nohdr.err &&
    nohdr.err.code === grpc.status.INVALID_ARGUMENT, nohdr.err && nohdr.err.code);

  // The harness rotates every second: three messages, three serials.
  const t0 = Date.now();
  const rot = await streamTake(cli.FetchX509SVID({}, header(), deadline(15)), 3);
  const serials = rot.got.map((m) => new crypto.X509Certificate(derSplit(m.svids[0].x509_svid)[0]).serialNumber);
  check('a stream sees at least two rotations (W-3)', new Set(serials).size === 3, serials);
  check('rotations arrive about once a second', Date.now() - t0 < 6000, Date.now() - t0);
  cli.close();
}

async function denied(sock) {
  const cli = client(sock);
  const r = await streamTake(cli.FetchX509SVID({}, header(), deadline(10)), 1);
  check('a caller with no entry gets PERMISSION_DENIED (W-6, E-5)', r.err &&
    r.err.code === grpc.status.PERMISSION_DENIED, r.err ? r.err.code : r.got);
  cli.close();
}

(async () => {
  const [mode, sock, spiffeId, tmp] = process.argv.slice(2);
  if (mode === 'full') await full(sock, spiffeId, tmp);
  else await denied(sock);
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.log(`FAIL - unexpected error: ${e.stack}`);
  process.exit(1);
});
