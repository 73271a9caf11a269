//! The SQL blob store: blobs in the `blobs` table of the primary store (SQLite natively and in
//! WASI components, D1 on Cloudflare when no R2 bucket is bound). Bytes are stored as base64
//! text, which every SQL adapter here binds the same way.

use std::rc::Rc;

use async_trait::async_trait;

use crate::identity::crypto::{base64url, base64url_decode};
use crate::store::ports::{BlobError, BlobStore, SqlStore};

/// D1 rows are limited to 2 MB; base64 makes bytes a third larger.
pub const MAX_SQL_BLOB_BYTES: usize = 1_500_000;

/// Blobs in the `blobs` table of a SQL store.
pub struct SqlBlobStore {
    store: Rc<dyn SqlStore>,
}

impl SqlBlobStore {
    /// Blobs in `store`'s `blobs` table.
    pub fn new(store: Rc<dyn SqlStore>) -> SqlBlobStore {
        SqlBlobStore { store }
    }
}

fn store_error(e: crate::store::ports::StoreError) -> BlobError {
    BlobError::Store(e.to_string())
}

#[async_trait(?Send)]
impl BlobStore for SqlBlobStore {
    fn max_bytes(&self) -> usize {
        MAX_SQL_BLOB_BYTES
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        if bytes.len() > MAX_SQL_BLOB_BYTES {
            return Err(BlobError::TooLarge { size: bytes.len(), max: MAX_SQL_BLOB_BYTES });
        }
        self.store
            .execute(
                "INSERT INTO blobs (key, data, byte_length, created_at) VALUES (?, ?, ?, strftime('%s', 'now') * 1000) \
                 ON CONFLICT (key) DO UPDATE SET data = excluded.data, byte_length = excluded.byte_length",
                vec![key.into(), base64url(bytes).into(), (bytes.len() as i64).into()],
            )
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), BlobError> {
        for key in keys {
            self.store
                .execute("DELETE FROM blobs WHERE key = ?", vec![key.as_str().into()])
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let rows =
            self.store.query("SELECT data FROM blobs WHERE key = ?", &[key.into()]).await.map_err(store_error)?;
        match rows.first() {
            None => Ok(None),
            Some(row) => {
                let text = row.text("data").map_err(store_error)?;
                base64url_decode(&text).map(Some).ok_or_else(|| BlobError::Store(format!("blob {key} is not base64")))
            }
        }
    }
}
