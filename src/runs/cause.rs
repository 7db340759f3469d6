//! The causes of failure that the built-in strategies' tools (tar, rclone, restic, busybox) put
//! into their last words, said first and in the user's words: a failed run's message starts with
//! "the S3 server refused the credentials (403 SignatureDoesNotMatch)", not with request ids. The
//! raw output follows, bounded.

/// (what the output contains, ignoring case; what it means). The first that matches wins, so the
/// specific come before the general.
const KNOWN: &[(&str, &str)] = &[
    ("SignatureDoesNotMatch", "the S3 server refused the credentials (403 SignatureDoesNotMatch): check the secret access key"),
    ("InvalidAccessKeyId", "the S3 server does not know the access key (403 InvalidAccessKeyId): check the access key id"),
    // Versity Gateway's word for an unknown access key.
    ("XAdminUserNotFound", "the S3 server does not know the access key (XAdminUserNotFound): check the access key id"),
    ("NoSuchBucket", "the bucket does not exist (NoSuchBucket): create it, or fix the destination's bucket"),
    ("AccessDenied", "the S3 server denied access (403 AccessDenied): the credentials may not use this bucket or prefix"),
    ("wrong password or no key found", "the restic password does not open the repository: check spec.restic.passwordSecret"),
    ("x509:", "the endpoint's TLS certificate is not trusted: give the destination its CA bundle"),
    ("certificate verify failed", "the endpoint's TLS certificate is not trusted: give the destination its CA bundle"),
    ("no such host", "the endpoint's host name does not resolve"),
    ("Name or service not known", "the endpoint's host name does not resolve"),
    ("connection refused", "the endpoint refused the connection (nothing listens there)"),
    ("i/o timeout", "the endpoint did not answer in time (unreachable, or a firewall drops the traffic)"),
    ("Connection timed out", "the endpoint did not answer in time (unreachable, or a firewall drops the traffic)"),
    ("No space left on device", "the storage is full (no space left on device)"),
    ("Disk quota exceeded", "the storage is full (disk quota exceeded)"),
    ("Read-only file system", "the storage is mounted read-only"),
    ("Permission denied", "permission denied on the storage: check the claim's ownership and spec.runAs"),
];

/// The known cause in `output`, if any.
pub fn known(output: &str) -> Option<&'static str> {
    let lower = output.to_lowercase();
    KNOWN.iter().find(|(needle, _)| lower.contains(&needle.to_lowercase())).map(|(_, cause)| *cause)
}

/// `output` with its known cause first: "destination offsite: <cause>; <output>".
pub fn first(destination: &str, output: &str) -> String {
    match known(output) {
        Some(cause) if destination.is_empty() => format!("{cause}; {output}"),
        Some(cause) => format!("destination {destination}: {cause}; {output}"),
        None => output.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_failures_are_said_first_in_the_users_words() {
        let cases = [
            (
                "ERROR : Failed to copy: s3 upload: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><RequestId>17A2B</RequestId></Error>",
                Some("the S3 server refused the credentials (403 SignatureDoesNotMatch): check the secret access key"),
            ),
            ("Fatal: unable to open config file: Stat: The specified bucket does not exist. NoSuchBucket", Some("the bucket does not exist (NoSuchBucket): create it, or fix the destination's bucket")),
            ("Fatal: wrong password or no key found", Some("the restic password does not open the repository: check spec.restic.passwordSecret")),
            ("dial tcp: lookup minio.invalid on 10.0.0.10:53: no such host", Some("the endpoint's host name does not resolve")),
            ("dial tcp 10.88.0.1:9: connect: Connection refused", Some("the endpoint refused the connection (nothing listens there)")),
            ("tar: write error: No space left on device", Some("the storage is full (no space left on device)")),
            ("mkdir: can't create directory '/backup/x': Permission denied", Some("permission denied on the storage: check the claim's ownership and spec.runAs")),
            (
                "Post request rcat error: XAdminUserNotFound: No user exists with the provided access key ID.  status code: 404, request id: H9I8ZG0IL47KPDR7",
                Some("the S3 server does not know the access key (XAdminUserNotFound): check the access key id"),
            ),
            ("gzip: invalid magic", None),
        ];
        for (output, cause) in cases {
            assert_eq!(known(output), cause, "{output}");
        }
        let message = first("offsite", "upload failed: SignatureDoesNotMatch 403");
        assert!(message.starts_with("destination offsite: the S3 server refused the credentials"), "{message}");
        assert_eq!(first("", "gzip: invalid magic"), "gzip: invalid magic");
    }
}
