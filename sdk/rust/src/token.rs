//! Signing client tokens locally: a tenant backend holding an app key's secret needs no REST
//! call to let a client connect.
//!
//! ```
//! use signalbox_sdk::token::TokenBuilder;
//! let token = TokenBuilder::new("app_123", 3600)
//!     .user("alice")
//!     .group("room-1")
//!     .permission("join:room-*")
//!     .sign("key_abc", b"the key's secret")
//!     .expect("valid claims");
//! assert_eq!(token.split('.').count(), 3);
//! ```

pub use signalbox_core::token::{ClientClaims, TokenError};
use signalbox_core::{AppId, GroupName, InvalidName, KeyId, Permission, UserId, clock};

/// Why claims could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    InvalidPermission(#[from] signalbox_core::permission::InvalidPermission),
}

/// Builds and signs a client token.
#[derive(Debug, Clone)]
pub struct TokenBuilder {
    app: String,
    ttl_seconds: u64,
    user: Option<String>,
    groups: Vec<String>,
    permissions: Vec<String>,
    info: Option<serde_json::Value>,
}

impl TokenBuilder {
    pub fn new(app: impl Into<String>, ttl_seconds: u64) -> Self {
        Self { app: app.into(), ttl_seconds, user: None, groups: Vec::new(), permissions: Vec::new(), info: None }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// `join:PATTERN`, `leave:PATTERN` or `publish:PATTERN`.
    pub fn permission(mut self, permission: impl Into<String>) -> Self {
        self.permissions.push(permission.into());
        self
    }

    pub fn info(mut self, info: serde_json::Value) -> Self {
        self.info = Some(info);
        self
    }

    /// The claims, validated.
    pub fn claims(&self) -> Result<ClientClaims, BuildError> {
        let now = clock::unix_seconds();
        Ok(ClientClaims {
            sub: self.user.as_deref().map(UserId::new).transpose()?,
            exp: now + self.ttl_seconds,
            iat: Some(now),
            app: AppId::new(&self.app)?,
            groups: self.groups.iter().map(GroupName::new).collect::<Result<_, _>>()?,
            permissions: self.permissions.iter().map(|p| Permission::parse(p)).collect::<Result<_, _>>()?,
            info: self.info.clone(),
        })
    }

    /// Signs with an app key (HS256, `kid` = the key id).
    pub fn sign(&self, key_id: &str, secret: &[u8]) -> Result<String, BuildError> {
        Ok(signalbox_core::token::sign(&self.claims()?, &KeyId::new(key_id)?, secret))
    }
}
