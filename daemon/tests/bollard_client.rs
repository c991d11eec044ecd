//! bollard, the maintained Rust Docker API client, against berthd: ping and version, pull,
//! create, start, wait, logs, inspect, remove.

mod common;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use common::{Daemon, IMAGE};
use futures_util::StreamExt;

#[test]
fn bollard_pulls_runs_and_reads_logs() {
    let d = Daemon::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let docker =
            Docker::connect_with_unix(d.sock.to_str().unwrap(), 60, bollard::API_DEFAULT_VERSION)
                .expect("connect");
        docker.ping().await.expect("ping");
        let v = docker.version().await.expect("version");
        assert!(v.api_version.is_some(), "{v:?}");

        let mut pull = docker.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(IMAGE)
                    .tag("latest")
                    .build(),
            ),
            None,
            None,
        );
        while let Some(step) = pull.next().await {
            step.expect("pull progress");
        }

        let body = bollard::models::ContainerCreateBody {
            image: Some(format!("{IMAGE}:latest")),
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo from-bollard; exit 4".into(),
            ]),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name("bol").build()),
                body,
            )
            .await
            .expect("create");
        docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .expect("start");
        let mut wait = docker.wait_container(&created.id, None::<WaitContainerOptions>);
        let mut code = None;
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) => code = Some(w.status_code),
                // bollard reports a non-zero exit as an error carrying the code.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => {
                    code = Some(c);
                }
                Err(e) => panic!("wait: {e}"),
            }
        }
        assert_eq!(code, Some(4));
        let mut logs = docker.logs(
            &created.id,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        let mut text = String::new();
        while let Some(chunk) = logs.next().await {
            text.push_str(&chunk.expect("logs").to_string());
        }
        assert_eq!(text, "from-bollard\n");
        let info = docker
            .inspect_container(
                "bol",
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect");
        assert_eq!(info.state.and_then(|s| s.exit_code), Some(4));
        docker
            .remove_container(
                "bol",
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .expect("remove");
    });
    d.finish();
}
