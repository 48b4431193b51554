//! The signer in process, without relays: events in, replies out, for the
//! attack tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use enclave::signer::{Dropped, Signer, SignerConfig};
use nostr::{Event, Keys, PublicKey, RelayUrl};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request, Params, Request, Response};

pub(crate) struct Enclave {
    pub(crate) signer: Signer,
    pub(crate) service: PublicKey,
    pub(crate) relay: RelayUrl,
}

pub(crate) fn now() -> u64 {
    enclave::unix_now()
}

pub(crate) fn enclave(config: SignerConfig) -> Enclave {
    let service = Keys::generate();
    let relay = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
    Enclave {
        service: service.public_key(),
        signer: Signer::new(service, relay.clone(), config),
        relay,
    }
}

impl Enclave {
    /// Hands `event` to the signer; the reply's response, or why it was dropped.
    pub(crate) fn handle(&self, event: &Event, reader: &Keys) -> Result<Response, Dropped> {
        let outcome = self.signer.try_handle(event, &self.relay, now())?;
        let reply = outcome.reply.expect("a handled request has a reply");
        Ok(open_response(reader, &reply.event).unwrap())
    }

    pub(crate) fn reply_event(&self, event: &Event) -> Event {
        self.signer
            .try_handle(event, &self.relay, now())
            .unwrap()
            .reply
            .unwrap()
            .event
    }

    pub(crate) fn admin_event(&self, user: &Keys, request: &AdminRequest) -> Event {
        seal_request(
            user,
            &self.service,
            KIND_ADMIN,
            &request.to_request(),
            Scheme::Nip44,
        )
        .unwrap()
    }

    pub(crate) fn admin(&self, user: &Keys, request: &AdminRequest) -> Result<String, String> {
        self.handle(&self.admin_event(user, request), user)
            .unwrap()
            .into_result()
    }

    pub(crate) fn call(
        &self,
        app: &Keys,
        user: &PublicKey,
        method: &str,
        params: &[&str],
    ) -> Response {
        let request = Request::new(method, Params::new(params.iter().copied()));
        let event = seal_request(app, user, KIND_NIP46, &request, Scheme::Nip44).unwrap();
        self.handle(&event, app).unwrap()
    }

    /// The owner of `user` allows `app` on it (importing it if need be).
    pub(crate) fn grant(&self, user: &Keys, app: &PublicKey) {
        let grant = AdminRequest::ConnectKey {
            keys: user.clone(),
            app: *app,
            relays: vec![self.relay.clone()],
            policy: None,
        };
        assert_eq!(self.admin(user, &grant), Ok("ok".into()));
    }

    /// Whether the held key `user` allows `app` (panics if `user` is not
    /// held: a key that is gone would allow nothing).
    pub(crate) fn allows(&self, user: &PublicKey, app: &PublicKey) -> bool {
        self.signer
            .store()
            .get(user)
            .expect("the user's key is held")
            .allows(app)
    }

    /// `user` imported with `app` allowed.
    pub(crate) fn user_with_app(&self) -> (Keys, Keys) {
        let (user, app) = (Keys::generate(), Keys::generate());
        self.grant(&user, &app.public_key());
        (user, app)
    }
}

pub(crate) fn import(relay: &RelayUrl, user: &Keys) -> AdminRequest {
    AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![relay.clone()],
        apps: KeptApps::Keep,
    }
}

pub(crate) fn forbidden(r: Response) -> String {
    let e = r.into_result().unwrap_err();
    assert!(e.contains("forbidden"), "{e}");
    e
}
