//! A folder of mails in place of sending them, for installations without secure mail and for
//! checking what a round would send.
//!
//! Each mail becomes `<folder>/<supplier>/<NNN>.txt`, holding a `Subject:` line, a blank line
//! and the body, and each attachment `<folder>/<supplier>/<NNN>-<filename>`. `NNN` counts up
//! from 001 per supplier. The files are owner-only (mode 0600, folders 0700), because an
//! overview names the supplier's staff.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::schedule::MailSender;
use crate::templates::MailContent;

/// Writes mails into a folder; see the module documentation for the layout.
#[derive(Clone, Debug)]
pub struct OutboxSender {
    folder: PathBuf,
}

impl OutboxSender {
    /// Creates a sender that writes below `folder`, which is created on the first mail.
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        Self {
            folder: folder.into(),
        }
    }

    /// Writes one mail and returns the path of its text file.
    pub fn write(&self, supplier: &str, content: &MailContent) -> std::io::Result<PathBuf> {
        let folder = self.folder.join(supplier);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)?;
        let number = next_number(&folder)?;

        let path = folder.join(format!("{number:03}.txt"));
        let message = format!("Subject: {}\n\n{}", content.subject, content.text);
        write_new(&path, message.as_bytes())?;
        for attachment in &content.attachments {
            let name = format!("{number:03}-{}", attachment.filename.replace('/', "_"));
            write_new(&folder.join(name), &attachment.content)?;
        }
        Ok(path)
    }
}

impl MailSender for OutboxSender {
    async fn send(&self, supplier: &str, content: &MailContent) -> Result<(), String> {
        self.write(supplier, content)
            .map(|_| ())
            .map_err(|e| format!("failed to write the mail to {}: {e}", self.folder.display()))
    }
}

/// Returns one more than the highest `NNN.txt` in `folder`.
fn next_number(folder: &Path) -> std::io::Result<u32> {
    let mut highest = 0;
    for entry in fs::read_dir(folder)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_suffix(".txt"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(number) = number {
            highest = highest.max(number);
        }
    }
    Ok(highest + 1)
}

fn write_new(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}
