//! Throwaway certificates for TLS tests, made with the `openssl` command (as
//! `dev/services` makes the services' own): a CA, and server or client
//! certificates it signs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A CA in `dir`: `<name>-ca.pem` (returned) and `<name>-ca.key`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-ca.key")));
    let subject = format!("/CN={name} test CA");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subject,
        "-keyout",
        s(&key),
        "-out",
        s(&pem),
    ]);
    pem
}

/// A certificate `<file>.pem` with its key `<file>.key` in `dir`, signed by
/// the CA `ca` (from [`make_ca`]): for 127.0.0.1 as a server, or a client's.
pub fn make_cert(dir: &Path, ca: &Path, file: &str, server: bool) -> (PathBuf, PathBuf) {
    make_cert_for_days(dir, ca, file, server, 2)
}

/// As [`make_cert`], valid from now for `days`; `-1` makes a certificate
/// that has already expired (its end a day before its start).
pub fn make_cert_for_days(dir: &Path, ca: &Path, file: &str, server: bool, days: i32) -> (PathBuf, PathBuf) {
    let (pem, key) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
    let (csr, ext) = (dir.join(format!("{file}.csr")), dir.join(format!("{file}.ext")));
    let ext_text = if server {
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(&ext, ext_text).expect("write the extensions file");
    let subject = format!("/CN={file}");
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &subject,
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
    ]);
    let ca_key = ca.with_file_name(ca.file_name().and_then(|n| n.to_str()).unwrap_or_default().replace(".pem", ".key"));
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string();
    openssl(&[
        "x509",
        "-req",
        "-days",
        &days.to_string(),
        "-in",
        s(&csr),
        "-CA",
        s(ca),
        "-CAkey",
        s(&ca_key),
        "-set_serial",
        &serial,
        "-extfile",
        s(&ext),
        "-out",
        s(&pem),
    ]);
    (pem, key)
}
