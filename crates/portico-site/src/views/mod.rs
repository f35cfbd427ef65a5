//! The site's views, one module per section.

pub mod accounts;
pub mod captcha;
pub mod demo;
pub mod notes;
