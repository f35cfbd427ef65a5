//! The site's views, one module per section, each declaring its own routes.
//!
//! A section's `routes()` names each path once, next to its handlers, with the methods it
//! answers and what it is for. [`routes`] gathers the sections: the router is built from that
//! list and `portico routes` prints it, so the two cannot disagree.

pub mod accounts;
pub mod captcha;
pub mod demo;
pub mod home;
pub mod notes;
pub mod site;

use axum::handler::Handler;
use axum::routing::MethodRouter;
use axum::Router;

use crate::state::AppState;

/// One row of the route table.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The path pattern.
    pub path: &'static str,
    /// The methods it answers, e.g. `GET, POST`.
    pub methods: String,
    /// What it is for.
    pub purpose: &'static str,
}

/// The handlers of one path, and the names of the methods they answer.
pub struct Methods {
    router: MethodRouter<AppState>,
    names: Vec<&'static str>,
}

/// `GET` (and `HEAD`) answered by `handler`.
pub fn get<H, T>(handler: H) -> Methods
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Methods {
        router: axum::routing::get(handler),
        names: vec!["GET"],
    }
}

/// `POST` answered by `handler`.
pub fn post<H, T>(handler: H) -> Methods
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Methods {
        router: axum::routing::post(handler),
        names: vec!["POST"],
    }
}

impl Methods {
    /// `POST` answered by `handler` as well.
    pub fn post<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.post(handler);
        self.names.push("POST");
        self
    }
}

/// A set of routes: the router part and its rows of the route table, built together.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A route whose handlers render pages: the logged-in user is read once before they run
    /// ([`crate::auth::fill_user`]), so the nav bar and the event log name them.
    pub fn page(self, path: &'static str, methods: Methods, purpose: &'static str) -> Self {
        let Methods { router, names } = methods;
        // `route_layer` panics only on a method router without handlers; `get` and `post` each
        // add one, and they are the only way to make a `Methods`.
        let router = router.route_layer(axum::middleware::from_fn(crate::auth::fill_user));
        self.add(path, Methods { router, names }, purpose)
    }

    /// A route whose handlers render no page (a file, JSON, a probe): nothing is read for it
    /// that its handlers do not read themselves.
    pub fn plain(self, path: &'static str, methods: Methods, purpose: &'static str) -> Self {
        self.add(path, methods, purpose)
    }

    fn add(mut self, path: &'static str, methods: Methods, purpose: &'static str) -> Self {
        self.router = self.router.route(path, methods.router);
        self.table.push(RouteInfo {
            path,
            methods: methods.names.join(", "),
            purpose,
        });
        self
    }

    /// These routes followed by `other`'s.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// The rows of the route table, in the order they were declared.
    pub fn table(&self) -> &[RouteInfo] {
        &self.table
    }

    /// The router of these routes.
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// Every route of the site, in the order `portico routes` lists them.
pub fn routes() -> Routes {
    Routes::new()
        .merge(home::routes())
        .merge(site::routes())
        .merge(demo::routes())
        .merge(captcha::routes())
        .merge(accounts::routes())
        .merge(notes::routes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_declared_once() {
        let routes = routes();
        let mut paths: Vec<&str> = routes.table().iter().map(|r| r.path).collect();
        let n = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), n);
        assert!(routes.table().iter().all(|r| !r.methods.is_empty()));
    }
}
