//! Texts of the mails, as minijinja templates. Danish is the default language.

use minijinja::{Environment, context};

/// The mail with a new account's username and initial password, in Danish.
pub const CREDENTIALS_DA: &str = "\
Til {{ supplier }}
Att.: {{ attention }}

Der er oprettet en brugerkonto til {{ display_name }}.

Brugernavn: {{ username }}
Midlertidig adgangskode: {{ password }}

Adgangskoden skal skiftes ved første login. Kontoen åbnes på den første dag med adgang.
Giv brugernavn og adgangskode personligt til medarbejderen, og slet derefter denne mail.

Mailen er sendt automatisk af Adgang og kan ikke besvares.
";

/// Subject of the credentials mail. It is sent unencrypted, so it names no person or account.
pub const CREDENTIALS_SUBJECT_DA: &str = "Ny brugerkonto";

/// Values of the credentials mail.
pub struct CredentialsText<'a> {
    /// The supplier's display name.
    pub supplier: &'a str,
    /// Names of the people the mail is for, such as the supplier's contact persons.
    pub attention: &'a [String],
    /// The staff member's display name.
    pub display_name: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

/// A template that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("failed to render the {template} mail template: {source}")]
pub struct TemplateError {
    template: &'static str,
    source: minijinja::Error,
}

/// Renders the Danish credentials mail.
pub fn render_credentials(values: &CredentialsText<'_>) -> Result<String, TemplateError> {
    let mut environment = Environment::new();
    environment.set_keep_trailing_newline(true);
    let error = |source| TemplateError {
        template: "credentials",
        source,
    };
    environment
        .add_template("credentials", CREDENTIALS_DA)
        .map_err(error)?;
    let attention = if values.attention.is_empty() {
        "kontaktpersonen".to_owned()
    } else {
        values.attention.join(", ")
    };
    environment
        .get_template("credentials")
        .and_then(|template| {
            template.render(context! {
                supplier => values.supplier,
                attention => attention,
                display_name => values.display_name,
                username => values.username,
                password => values.password,
            })
        })
        .map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_text_contains_values() {
        let attention = vec!["Birthe Lund".to_owned(), "Ole Dam".to_owned()];
        let text = render_credentials(&CredentialsText {
            supplier: "Omsorg Nord ApS",
            attention: &attention,
            display_name: "Anne Hansen",
            username: "anne.hansen",
            password: "Xy7-<&>-secret",
        })
        .unwrap();
        assert!(text.contains("Til Omsorg Nord ApS\n"), "{text}");
        assert!(text.contains("Att.: Birthe Lund, Ole Dam\n"), "{text}");
        assert!(text.contains("Brugernavn: anne.hansen\n"), "{text}");
        // Plain text: no HTML escaping of the password.
        assert!(
            text.contains("Midlertidig adgangskode: Xy7-<&>-secret\n"),
            "{text}"
        );
        assert!(text.ends_with('\n'), "{text}");
    }
}
