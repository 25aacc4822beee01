//! A throwaway PKI on disk: a CA, a server certificate for `localhost`/`127.0.0.1`, and client certificates,
//! as the PEM files a kubeconfig and `serve --tls-cert/--client-ca` point at.

use std::path::{Path, PathBuf};

pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A client certificate and its key.
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// Generate a CA named `name` and a server certificate in `dir`.
    pub fn generate(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, issuer.pem()).unwrap();
        let mut pki = Self {
            dir: dir.to_path_buf(),
            ca,
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            issuer,
        };
        let server = pki.leaf(
            &format!("{name}-server"),
            "kube-audit-forwarder",
            vec!["localhost".into(), "127.0.0.1".into()],
        );
        pki.server_cert = server.cert;
        pki.server_key = server.key;
        pki
    }

    /// A client certificate with this common name.
    pub fn client(&self, common_name: &str) -> ClientCert {
        self.leaf(
            &format!("client-{}", common_name.replace(':', "_")),
            common_name,
            vec![],
        )
    }

    fn leaf(&self, file: &str, common_name: &str, names: Vec<String>) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let out = ClientCert {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&out.cert, cert.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }
}
