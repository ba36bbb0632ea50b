//! A streaming `multipart/form-data` parser (the upload route's body): file parts are hashed as
//! they stream by, small fields are kept; memory stays bounded whatever the body size.

/// Largest form field value (non-file part) the upload route keeps.
pub const MAX_UPLOAD_FIELD: usize = 64 * 1024;

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty() && value.len() <= 70).then(|| value.to_owned())
    })
}

/// A `Content-Disposition` parameter (`name="x"`), unquoted.
fn disposition_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Position of `needle` in `hay` (scans for the first byte, then compares).
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let p = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += p;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[derive(PartialEq, Eq)]
enum PartState {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` (end) or CRLF (a part follows).
    AfterDelimiter,
    Headers,
    Data,
    Done,
}

struct PartInfo {
    name: String,
    file_name: Option<String>,
    content_type: String,
}

/// A push parser of a multipart body: hashes file parts as they stream by, keeps small fields.
/// Memory: one read buffer plus the delimiter, whatever the body size.
pub struct MultipartSink {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: PartState,
    part: Option<PartInfo>,
    hasher: sha2::Sha256,
    part_size: u64,
    value: Vec<u8>,
    pub(crate) fields: Vec<(String, String)>,
    /// (field name, file name, content type, size, sha256) of the first file part.
    pub(crate) file: Option<(String, String, String, u64, String)>,
}

impl MultipartSink {
    /// A parser for a body with this boundary (see [`multipart_boundary`]).
    pub fn new(boundary: &str) -> MultipartSink {
        use sha2::Digest;
        MultipartSink {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            // The body starts with `--boundary`: a leading CRLF makes it a normal delimiter.
            buf: b"\r\n".to_vec(),
            state: PartState::Preamble,
            part: None,
            hasher: sha2::Sha256::new(),
            part_size: 0,
            value: Vec::new(),
            fields: Vec::new(),
            file: None,
        }
    }

    /// Whether the closing delimiter has been seen.
    pub fn is_done(&self) -> bool {
        self.state == PartState::Done
    }

    /// The non-file form fields so far, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// (field name, file name, content type, size, sha256) of the first complete file part.
    pub fn file(&self) -> Option<&(String, String, String, u64, String)> {
        self.file.as_ref()
    }

    fn part_data(&mut self, data: &[u8]) -> Result<(), &'static str> {
        use sha2::Digest;
        let is_file = self.part.as_ref().is_some_and(|p| p.file_name.is_some());
        self.part_size += data.len() as u64;
        if is_file {
            self.hasher.update(data);
        } else {
            if self.value.len() + data.len() > MAX_UPLOAD_FIELD {
                return Err("form field too large");
            }
            self.value.extend_from_slice(data);
        }
        Ok(())
    }

    fn end_part(&mut self) {
        use sha2::Digest;
        let Some(part) = self.part.take() else {
            return;
        };
        match part.file_name {
            Some(file_name) => {
                let hash = std::mem::replace(&mut self.hasher, sha2::Sha256::new()).finalize();
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                if self.file.is_none() {
                    self.file =
                        Some((part.name, file_name, part.content_type, self.part_size, hex));
                }
            }
            None => {
                let value = String::from_utf8_lossy(&std::mem::take(&mut self.value)).into_owned();
                self.fields.push((part.name, value));
            }
        }
        self.part_size = 0;
    }

    /// Parses the next piece of the body (any split). An error is final.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), &'static str> {
        const MAX_PART_HEAD: usize = 16 * 1024;
        self.buf.extend_from_slice(data);
        let keep = self.delimiter.len() - 1;
        loop {
            match self.state {
                PartState::Done => {
                    self.buf.clear(); // epilogue: ignored
                    return Ok(());
                }
                PartState::Preamble | PartState::Data => {
                    match find_bytes(&self.buf, &self.delimiter) {
                        Some(pos) => {
                            if self.state == PartState::Data {
                                let data = self.buf[..pos].to_vec();
                                self.part_data(&data)?;
                                self.end_part();
                            }
                            self.buf.drain(..pos + self.delimiter.len());
                            self.state = PartState::AfterDelimiter;
                        }
                        None => {
                            if self.buf.len() > keep {
                                let cut = self.buf.len() - keep;
                                if self.state == PartState::Data {
                                    // Split borrow: hash/keep the bytes, then drop them.
                                    let data: Vec<u8> = self.buf[..cut].to_vec();
                                    self.part_data(&data)?;
                                }
                                self.buf.drain(..cut);
                            }
                            return Ok(());
                        }
                    }
                }
                PartState::AfterDelimiter => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = PartState::Done;
                    } else if self.buf.starts_with(b"\r\n") {
                        self.buf.drain(..2);
                        self.state = PartState::Headers;
                    } else {
                        return Err("malformed multipart delimiter");
                    }
                }
                PartState::Headers => {
                    let Some(end) = find_bytes(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_PART_HEAD {
                            return Err("multipart part headers too large");
                        }
                        return Ok(());
                    };
                    let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let mut disposition = None;
                    let mut content_type = String::new();
                    for line in text.split("\r\n") {
                        let Some((name, value)) = line.split_once(':') else {
                            return Err("malformed multipart part header");
                        };
                        let name = name.trim();
                        if name.eq_ignore_ascii_case("content-disposition") {
                            disposition = Some(value.trim().to_owned());
                        } else if name.eq_ignore_ascii_case("content-type") {
                            content_type = value.trim().to_owned();
                        }
                    }
                    let disposition =
                        disposition.ok_or("multipart part without Content-Disposition")?;
                    let name = disposition_param(&disposition, "name")
                        .ok_or("multipart part without a name")?;
                    self.part = Some(PartInfo {
                        name,
                        file_name: disposition_param(&disposition, "filename"),
                        content_type,
                    });
                    self.state = PartState::Data;
                }
            }
        }
    }
}
