#!/bin/bash
# Does a tool we did not write accept the X.509-SVIDs we mint? `openssl verify -x509_strict`
# must accept root -> intermediate -> leaf from test/x509_mint, for TLS client and server
# use, and must refuse the leaf against another root and under a wrong trust domain.
set -euo pipefail

helper="${SIGIL_BUILD_DIR:?SIGIL_BUILD_DIR is not set}/test/x509_mint"
[ -x "$helper" ] || { echo "FAIL: helper $helper not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/a" "$tmp/b"

"$helper" "$tmp/a" example.org /ns/prod/sa/web
"$helper" "$tmp/b" example.org /ns/prod/sa/web
cd "$tmp"

fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. the chain verifies, strictly, also for both TLS purposes
for purpose in "" "-purpose sslserver" "-purpose sslclient"; do
    # shellcheck disable=SC2086
    out=$(openssl verify -x509_strict $purpose -CAfile a/root.pem -untrusted a/inter.pem \
        a/leaf.pem 2>&1) || true
    if [ "$out" = "a/leaf.pem: OK" ]; then ok "openssl verify ${purpose:-(no purpose)}"
    else bad "openssl verify ${purpose:-(no purpose)}: $out"; fi
done

# 2. against a different root (same trust domain and names, other keys) it must fail
if out=$(openssl verify -x509_strict -CAfile b/root.pem -untrusted a/inter.pem a/leaf.pem 2>&1)
then bad "leaf verified against another root: $out"
else ok "refused against another root"; fi
if out=$(openssl verify -x509_strict -CAfile a/root.pem -untrusted b/inter.pem a/leaf.pem 2>&1)
then bad "leaf verified with another intermediate: $out"
else ok "refused with another intermediate"; fi

# 3. without the intermediate there is no path
if out=$(openssl verify -x509_strict -CAfile a/root.pem a/leaf.pem 2>&1)
then bad "leaf verified without its intermediate: $out"
else ok "refused without the intermediate"; fi

# 4. openssl honours the intermediate's URI name constraint (X-7): leaves signed by hand
#    with openssl under our intermediate verify for spiffe://example.org/... and fail for
#    another trust domain or a subdomain.
openssl ecparam -name prime256v1 -genkey -noout -out hand-key.pem 2>/dev/null
hand_leaf() { # <name> <uri>
    printf '[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n%s\n%s\n%s\n' \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=URI:$2" \
        "authorityKeyIdentifier=keyid:always" >"$1.cnf"
    openssl req -new -key hand-key.pem -subj "/CN=$1" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA a/inter.pem -CAkey a/inter-key.pem -set_serial 77 \
        -days 1 -sha256 -extfile "$1.cnf" -extensions v3 -out "$1.pem" 2>/dev/null
}
hand_leaf same spiffe://example.org/hand
hand_leaf other spiffe://other.org/hand
hand_leaf sub spiffe://sub.example.org/hand
if out=$(openssl verify -x509_strict -CAfile a/root.pem -untrusted a/inter.pem same.pem 2>&1)
then ok "hand-made leaf in example.org verifies (control)"
else bad "hand-made leaf in example.org refused: $out"; fi
for name in other sub; do
    if out=$(openssl verify -x509_strict -CAfile a/root.pem -untrusted a/inter.pem "$name.pem" 2>&1)
    then bad "leaf outside the name constraint verified: $name"
    elif grep -q "permitted subtree violation" <<<"$out"; then ok "name constraint refuses $name"
    else bad "leaf $name refused for another reason: $out"; fi
done

# 5. the leaf's shape, as openssl reads it
text=$(openssl x509 -in a/leaf.pem -noout -text)
for want in "CA:FALSE" "Digital Signature" "TLS Web Server Authentication, TLS Web Client Authentication" \
    "URI:spiffe://example.org/ns/prod/sa/web" "DNS:web.example.org" "ecdsa-with-SHA256"; do
    if grep -qF "$want" <<<"$text"; then ok "leaf has $want"; else bad "leaf lacks $want"; fi
done

# 6. the Workload API forms: concatenated DER chain, PKCS#8 key file mode 0600
if [ "$(stat -c %a a/leaf-key.pem)" = 600 ]; then ok "key file is 0600"
else bad "key file mode $(stat -c %a a/leaf-key.pem)"; fi
if openssl pkey -in a/leaf-key.pem -noout 2>/dev/null &&
    [ "$(openssl pkey -in a/leaf-key.pem -pubout | sha256sum)" = \
      "$(openssl x509 -in a/leaf.pem -noout -pubkey | sha256sum)" ]; then ok "key matches leaf"
else bad "key does not match the leaf"; fi
if [ "$(openssl x509 -in a/leaf.pem -outform DER | cat - <(openssl x509 -in a/inter.pem -outform DER) | sha256sum)" = \
     "$(sha256sum <a/chain.der)" ]; then ok "chain.der is leaf||intermediate DER"
else bad "chain.der is not leaf||intermediate DER"; fi
if openssl req -inform DER -in a/csr.der -noout -verify 2>&1 | grep -q "verify OK"; then
    ok "CSR self-signature verifies with openssl"
else bad "openssl does not verify our CSR"; fi

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
